"""Fetch files over http(s) or ``file://``: streaming, resume, retries, checksums, caps.

One file is streamed into ``<dest>.part`` next to its destination and renamed into
place only once its size and checksum check out. An interrupted transfer is resumed
with a ``Range`` request carrying ``If-Range`` (the ETag or Last-Modified of the first
response; ``resume.py``): ``206`` appends; ``200`` (the server ignored the range, or
the file changed) restarts from byte 0, as does a ``206``/``416`` stating another size
or ETag. A ``.part`` left by a killed run is resumed the same way, but only when its
sidecar holds a validator. 5xx, 429, timeouts and dropped connections are retried with
exponential backoff, a bounded number of times; 401/403/410 or an expiry in the past
mean the signed URL is dead, so they fail at once with a ``UrlExpiredError``; a
redirect loop is one ``DownloadError``.

Bodies are taken as sent (``Accept-Encoding: identity``; a ``Content-Encoding`` is
refused, so a gzip bomb is never inflated), counted against a byte cap and a deadline
(``budget.py``), and checked against the free disk space when their size is stated.
On failure the ``.part`` file is deleted; on an interrupt (Ctrl-C) it is kept to resume.

Callers (``batch.fetch_many`` via ``sources.download``) point ``dest`` into a hidden
staging folder and publish the whole set at the end, so a failed download leaves
nothing behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from tinkerkit.export import resume
from tinkerkit.export.budget import Budget
from tinkerkit.export.checksums import md5_from_headers, verify_file
from tinkerkit.export.errors import DownloadError, UrlExpiredError
from tinkerkit.export.resume import PartInfo, describe
from tinkerkit.train.progress import progress_bar

CHUNK = 1 << 20
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, sleeping ``backoff * 2**k`` (capped) between.

    Example:
        >>> RetryPolicy(attempts=3, backoff=0.0).delay(2)
        0.0
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 20.0
    timeout: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2**attempt)


class Progress:
    """A thread-safe byte counter over one progress bar (``train.progress``: a widget in a
    notebook, tqdm in a terminal, plain lines into a file); a no-op when disabled."""

    def __init__(self, enabled: bool, label: str = "download") -> None:
        self._lock = threading.Lock()
        self._bar = progress_bar(0, desc=label, unit="B", unit_scale=True) if enabled else None

    def add_total(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.total = (self._bar.total or 0) + n

    def update(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _Retry(Exception):
    """A transient failure: try again (resuming what we have)."""


class Cancelled(Exception):
    """Another file of the same batch failed; stop early."""


@dataclass
class _State:
    total: int | None = None
    md5: str | None = None  # of the whole object, from the response that started the file
    counted_total: bool = False
    info: PartInfo | None = None  # validators of the file the .part belongs to


def fetch(
    url: str,
    dest: Path,
    *,
    client: httpx.Client | None = None,
    sha256: str | None = None,
    expires: datetime | None = None,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
    budget: Budget | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``), resuming and retrying; returns ``dest``.

    ``budget`` caps the bytes and time (default: ``Budget()``, 32 GiB and 2 hours).

    Example:
        >>> fetch("https://example.com/adapter_model.safetensors", Path("out/a.safetensors"))
        PosixPath('out/a.safetensors')
    """
    retry = retry or RetryPolicy()
    progress = progress or Progress(False)
    budget = budget or Budget()
    part = dest.with_name(dest.name + ".part")
    state = _State()
    _adopt_leftover(url, part, state, progress, budget)
    own_client = client is None
    http = client or httpx.Client(timeout=retry.timeout, follow_redirects=True)
    try:
        for attempt in range(retry.attempts):
            if expires is not None and expires <= datetime.now(UTC):
                raise UrlExpiredError(url, f"the signed URL expired at {expires.isoformat()}")
            budget.check_time(url)
            try:
                if url.startswith("file:"):
                    _copy_file(url, part, state, progress, cancel, budget)
                else:
                    _attempt(http, url, part, state, progress, cancel, budget)
                break
            except httpx.TooManyRedirects:
                raise DownloadError(
                    url,
                    "the server redirected too many times (a redirect loop)",
                    "Check the URL; ask for a fresh one if it was signed.",
                ) from None
            except httpx.UnsupportedProtocol as exc:
                raise DownloadError(url, f"it led to an unsupported URL ({exc})") from None
            except (_Retry, httpx.TransportError) as exc:
                if attempt + 1 >= retry.attempts:
                    raise DownloadError(
                        url,
                        f"gave up after {retry.attempts} attempts (last: {exc or type(exc).__name__})",
                        "Check the network or the server, then run the download again.",
                    ) from exc
                budget.check_time(url, wait=retry.delay(attempt))
                sleep(retry.delay(attempt))
            except httpx.HTTPError as exc:
                raise DownloadError(url, f"{type(exc).__name__}: {exc}") from None
        verify_file(url, part, size=state.total, md5=state.md5, sha256=sha256)
        os.replace(part, dest)
        resume.sidecar(part).unlink(missing_ok=True)
        return dest
    except (KeyboardInterrupt, Cancelled):
        raise  # keep the .part and its sidecar: running the download again resumes it
    except BaseException:
        if part.exists():
            budget.give_back(part.stat().st_size)
        resume.discard(part)
        raise
    finally:
        if own_client:
            http.close()


def _adopt_leftover(
    url: str, part: Path, state: _State, progress: Progress, budget: Budget
) -> None:
    """Resume a ``.part`` an earlier (killed) run left, if its sidecar can validate it."""
    if not part.exists():
        resume.discard(part)
        return
    info = resume.load(part, url)
    if info is None or url.startswith("file:"):
        resume.discard(part)
        return
    state.info, state.total, state.md5 = info, info.total, info.md5
    budget.take(url, part.stat().st_size)
    progress.update(part.stat().st_size)


def _attempt(
    client: httpx.Client,
    url: str,
    part: Path,
    state: _State,
    progress: Progress,
    cancel: threading.Event | None,
    budget: Budget,
) -> None:
    have = part.stat().st_size if part.exists() else 0
    # identity: byte ranges and Content-Length must count the bytes we store.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if state.info is not None and state.info.validator:
            headers["If-Range"] = state.info.validator

    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status in (401, 403, 410):
            raise UrlExpiredError(url, f"the server answered HTTP {status}")
        if status == 416 and have:
            total = _range_total(response.headers.get("content-range", ""))
            if total == have and state.total in (None, total) and _same(state, response):
                state.total = total  # the previous attempt had in fact finished
                return
            _restart(part, state, progress, budget, have)
            raise _Retry("HTTP 416 for the resumed range (the file changed?); restarting")
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        if status >= 400:
            hint = "Check the URL or tinker:// path." if status == 404 else ""
            raise DownloadError(url, f"the server answered HTTP {status}", hint)
        _check_encoding(url, response)
        if status == 206:
            mode = "ab"
            _check_resumed(url, part, state, progress, budget, have, response)
        else:  # 200: the whole body (the server ignored the Range, or the file changed)
            if have:
                _restart(part, state, progress, budget, have)
                have = 0
            mode = "wb"
            length = response.headers.get("content-length", "")
            state.total = int(length) if length.isdigit() else None
            state.md5 = md5_from_headers(response)
            state.info = describe(url, response, state.total, state.md5)
            resume.save(part, state.info)
        if state.total is not None:
            budget.check_size(url, state.total, have)
            _check_free_space(url, part, state.total - have)
            if not state.counted_total:
                progress.add_total(state.total)
                state.counted_total = True
        with open(part, mode) as out:
            # iter_raw: the bytes as sent, never decoded; no chunk size, since a chunker
            # would hold bytes back that a dropped connection loses.
            for chunk in response.iter_raw():
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                budget.check_time(url)
                budget.take(url, len(chunk))
                _write(url, out, chunk)
                progress.update(len(chunk))
    size = part.stat().st_size
    if state.total is not None and size < state.total:
        # A dropped connection: keep the .part, the next attempt asks for the rest.
        raise _Retry(f"the connection ended after {size} of {state.total} bytes")


def _check_encoding(url: str, response: httpx.Response) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(
            url,
            f"the server sent the body with Content-Encoding {encoding!r} although 'identity' "
            "was asked for; refusing to decode it",
            "Download the file from a server that sends it as stored.",
        )


def _check_resumed(
    url: str,
    part: Path,
    state: _State,
    progress: Progress,
    budget: Budget,
    have: int,
    response: httpx.Response,
) -> None:
    """A ``206`` must continue the same file at our offset; otherwise start again."""
    match = _RANGE.fullmatch(response.headers.get("content-range", "").strip())
    total = None if match is None or match.group(3) == "*" else int(match.group(3))
    if (
        match is None
        or int(match.group(1)) != have
        or (state.total is not None and total != state.total)
        or not _same(state, response)
    ):
        _restart(part, state, progress, budget, have)
        raise _Retry("the server resumed another version or offset; restarting from byte 0")
    state.total = total
    state.md5 = state.md5 or md5_from_headers(response)  # x-goog-hash covers the whole object


def _same(state: _State, response: httpx.Response) -> bool:
    return state.info is None or state.info.same_file(response)


def _restart(part: Path, state: _State, progress: Progress, budget: Budget, have: int) -> None:
    """Throw the .part away: what it holds belongs to another version of the file."""
    resume.discard(part)
    budget.give_back(have)
    progress.update(-have)
    state.total, state.md5, state.info = None, None, None


def _check_free_space(url: str, part: Path, needed: int) -> None:
    free = shutil.disk_usage(part.parent).free
    if needed > free:
        raise DownloadError(
            url,
            f"it needs {needed} more bytes but only {free} are free on that disk; nothing was kept",
            "Free some space or download somewhere else (--out).",
        )


def _write(url: str, out: IO[Any], chunk: bytes) -> None:
    try:
        out.write(chunk)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DownloadError(
            url,
            f"the disk is full ({exc.strerror}); nothing was kept",
            "Free some space or download somewhere else (--out).",
        ) from None


def _copy_file(
    url: str,
    part: Path,
    state: _State,
    progress: Progress,
    cancel: threading.Event | None,
    budget: Budget,
) -> None:
    parsed = urllib.parse.urlparse(url)
    source = Path(urllib.request.url2pathname(parsed.path))
    if not source.is_file():
        raise DownloadError(
            url, "no such file", "Check the path; offline checkpoints live under TINKERKIT_HOME."
        )
    state.total = source.stat().st_size
    budget.check_size(url, state.total, 0)
    _check_free_space(url, part, state.total)
    progress.add_total(state.total)
    with open(source, "rb") as src, open(part, "wb") as out:
        while chunk := src.read(CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            budget.check_time(url)
            budget.take(url, len(chunk))
            _write(url, out, chunk)
            progress.update(len(chunk))


def _range_total(value: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", value.strip())
    return int(match.group(1)) if match else None
