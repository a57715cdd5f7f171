"""Fetch files over http(s) or ``file://``: streaming, resume, retries, checksums.

One file is streamed into ``<dest>.part`` next to its destination and renamed into
place only once its size and checksum check out. An interrupted transfer is resumed
with an HTTP ``Range`` request (``206`` appends; a server that answers ``200``
instead is restarted from byte 0). 5xx, 429, timeouts and dropped connections are
retried with exponential backoff, a bounded number of times; 401/403/410 or an expiry
in the past mean the signed URL is dead, so they fail at once with a
``UrlExpiredError``. On final failure the ``.part`` file is deleted.

Callers (``batch.fetch_many`` via ``sources.download``) point ``dest`` into a hidden staging folder
and publish the whole set at the end, so a failed download leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from tqdm.auto import tqdm

from tinkerkit.export.checksums import md5_from_headers, verify_file
from tinkerkit.export.errors import DownloadError, UrlExpiredError

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
    """A thread-safe byte counter over one tqdm bar (a no-op when disabled)."""

    def __init__(self, enabled: bool, label: str = "download") -> None:
        self._lock = threading.Lock()
        self._bar = tqdm(total=0, unit="B", unit_scale=True, desc=label, disable=not enabled)

    def add_total(self, n: int) -> None:
        with self._lock:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def update(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


class _Retry(Exception):
    """A transient failure: try again (resuming what we have)."""


class Cancelled(Exception):
    """Another file of the same batch failed; stop early."""


@dataclass
class _State:
    total: int | None = None
    md5: str | None = None  # of the whole object, from the first response that states it
    counted_total: bool = False


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
) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``), resuming and retrying; returns ``dest``.

    Example:
        >>> fetch("https://example.com/adapter_model.safetensors", Path("out/a.safetensors"))
        PosixPath('out/a.safetensors')
    """
    retry = retry or RetryPolicy()
    progress = progress or Progress(False)
    part = dest.with_name(dest.name + ".part")
    state = _State()
    own_client = client is None
    http = client or httpx.Client(timeout=retry.timeout, follow_redirects=True)
    try:
        for attempt in range(retry.attempts):
            if expires is not None and expires <= datetime.now(UTC):
                raise UrlExpiredError(url, f"the signed URL expired at {expires.isoformat()}")
            try:
                if url.startswith("file:"):
                    _copy_file(url, part, state, progress, cancel)
                else:
                    _attempt(http, url, part, state, progress, cancel)
                break
            except (_Retry, httpx.TransportError) as exc:
                if attempt + 1 >= retry.attempts:
                    raise DownloadError(
                        url,
                        f"gave up after {retry.attempts} attempts (last: {exc or type(exc).__name__})",
                        "Check the network or the server, then run the download again.",
                    ) from exc
                sleep(retry.delay(attempt))
        verify_file(url, part, size=state.total, md5=state.md5, sha256=sha256)
        os.replace(part, dest)
        return dest
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        if own_client:
            http.close()


def _attempt(
    client: httpx.Client,
    url: str,
    part: Path,
    state: _State,
    progress: Progress,
    cancel: threading.Event | None,
) -> None:
    have = part.stat().st_size if part.exists() else 0
    # identity: byte ranges and Content-Length must count the bytes we store.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"

    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status in (401, 403, 410):
            raise UrlExpiredError(url, f"the server answered HTTP {status}")
        if status == 416 and have:
            total = _range_total(response.headers.get("content-range", ""))
            if total == have:  # the previous attempt had in fact finished
                state.total = total
                return
            part.unlink()
            raise _Retry("HTTP 416 for the resumed range; restarting from byte 0")
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        if status >= 400:
            hint = "Check the URL or tinker:// path." if status == 404 else ""
            raise DownloadError(url, f"the server answered HTTP {status}", hint)
        state.md5 = state.md5 or md5_from_headers(response)
        if status == 206:
            match = _RANGE.fullmatch(response.headers.get("content-range", "").strip())
            if match is None or int(match.group(1)) != have:
                part.unlink()
                raise _Retry("the server resumed at another offset; restarting from byte 0")
            mode = "ab"
            state.total = None if match.group(3) == "*" else int(match.group(3))
        else:  # 200: the whole body (the server ignored or was not sent a Range)
            if have:
                progress.update(-have)
            mode = "wb"
            length = response.headers.get("content-length")
            state.total = int(length) if length and length.isdigit() else None
        if state.total is not None and not state.counted_total:
            progress.add_total(state.total)
            state.counted_total = True
        with open(part, mode) as out:
            # No chunk size: a chunker would hold bytes back that a dropped connection loses.
            for chunk in response.iter_bytes():
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                out.write(chunk)
                progress.update(len(chunk))
    size = part.stat().st_size
    if state.total is not None and size < state.total:
        # A dropped connection: keep the .part, the next attempt asks for the rest.
        raise _Retry(f"the connection ended after {size} of {state.total} bytes")


def _copy_file(
    url: str, part: Path, state: _State, progress: Progress, cancel: threading.Event | None
) -> None:
    parsed = urllib.parse.urlparse(url)
    source = Path(urllib.request.url2pathname(parsed.path))
    if not source.is_file():
        raise DownloadError(
            url, "no such file", "Check the path; offline checkpoints live under TINKERKIT_HOME."
        )
    state.total = source.stat().st_size
    progress.add_total(state.total)
    with open(source, "rb") as src, open(part, "wb") as out:
        while chunk := src.read(CHUNK):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            out.write(chunk)
            progress.update(len(chunk))


def _range_total(value: str) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", value.strip())
    return int(match.group(1)) if match else None
