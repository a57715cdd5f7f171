"""``download(source, out_dir)``: a checkpoint from anywhere into a local folder.

Sources: ``tinker://<run>/{weights,sampler_weights,external_weights}/<name>``, an
http(s) or ``file://`` URL, or a local tar. Routes for ``tinker://`` paths:

- ``external_weights``: ``RestClient.get_external_weights_urls`` (tinker 0.38) gives one
  signed URL per file; each is fetched (concurrently), re-signed once if they expire.
- ``weights`` / ``sampler_weights``: an older SDK's
  ``get_checkpoint_archive_url_from_tinker_path`` (a tar, extracted safely) when the
  client has it; otherwise (tinker 0.38, online and offline alike: only public calls
  are used, never an offline backend's store) a clear ``UnsupportedSourceError``
  saying how to export the weights with ``save_weights_external``.

Everything is staged in a hidden folder next to ``out_dir`` and published with one
rename at the end. On failure the staging folder (with any ``.part`` files) is
deleted: ``out_dir`` is then exactly as before (absent, or empty). A run that was
killed (or interrupted) leaves its staging folder, and the next run of the same
download into the same folder resumes its ``.part`` files, validated (``fetch``).
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import tarfile
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
from tinker import types

from tinkerkit._defaults import rest_client, service_or_default
from tinkerkit.errors import InvalidTinkerPathError
from tinkerkit.export.batch import FileSpec, fetch_many
from tinkerkit.export.budget import DEFAULT_DEADLINE_S, DEFAULT_MAX_BYTES, Budget
from tinkerkit.export.checksums import verify_file
from tinkerkit.export.errors import (
    DownloadError,
    UnsupportedSourceError,
    UrlExpiredError,
    redact,
)
from tinkerkit.export.fetch import RetryPolicy
from tinkerkit.export.outputs import check_out_dir, publish
from tinkerkit.export.safe_tar import Limits, safe_extract
from tinkerkit.protocols import ServiceClientLike

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


@dataclass
class _Plan:
    files: list[FileSpec]
    archive: str | None = None  # the name of the one file to extract, if any
    resign: Callable[[], list[FileSpec]] | None = None
    sniff: bool = False  # a single URL: extract it if its content is a tar


def download(
    source: str | Path,
    out_dir: str | Path,
    *,
    service: ServiceClientLike | None = None,
    progress: bool = True,
    sha256: str | Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    max_workers: int = 4,
    client: httpx.Client | None = None,
    limits: Limits | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> Path:
    """Download a checkpoint into ``out_dir`` (which must be new or empty); returns it.

    ``service`` is a ``tk.connect(...)`` client (default: ``tk.connect()``), needed only
    for ``tinker://`` sources. ``sha256`` is one digest (single file or local tar) or a
    name → digest map. ``max_bytes`` caps the bytes of all files together, ``deadline_s``
    the whole download's time (retries included).

    Example:
        >>> service = tk.connect("local")
        >>> tk.export.download("tinker://run/external_weights/final", "weights/", service=service)
        PosixPath('weights')
    """
    out = Path(out_dir)
    check_out_dir(out)
    for digest in [sha256] if isinstance(sha256, str) else (sha256 or {}).values():
        if not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise UnsupportedSourceError(
                f"sha256 {digest[:80]!r} is not a sha256 digest (64 hex digits); copy it "
                "again from where it was published."
            )
    text = str(source)
    local = Path(text)
    if "://" not in text:
        if local.is_file():
            expected = sha256 if isinstance(sha256, str) else (sha256 or {}).get(local.name)
            if expected:
                verify_file(text, local, size=None, md5=None, sha256=expected)
            return safe_extract(local, out, limits=limits)
        raise UnsupportedSourceError(
            f"{text} is neither a tinker:// path, an http(s)/file:// URL, nor an existing tar "
            "file. Check the spelling."
        )
    plan = _plan(text, service)
    if isinstance(sha256, str):
        if len(plan.files) != 1:
            raise UnsupportedSourceError(
                f"{text} has {len(plan.files)} files; pass sha256 as a mapping of file name "
                "to digest."
            )
        plan.files = [replace(plan.files[0], sha256=sha256)]
    elif isinstance(sha256, Mapping):
        plan.files = [replace(f, sha256=sha256.get(f.name, f.sha256)) for f in plan.files]
    budget = Budget(max_bytes, deadline_s)
    with staging_folder(out, text) as staging:
        files = staging / "files"
        kw: dict[str, Any] = dict(
            client=client, retry=retry, progress=progress, max_workers=max_workers, budget=budget
        )
        try:
            fetch_many(plan.files, files, **kw)
        except UrlExpiredError:
            if plan.resign is None:
                raise
            # Signed URLs expired mid-way: sign new ones once; done files are skipped.
            fetch_many(plan.resign(), files, **kw)
        if plan.archive is None and plan.sniff and is_archive(files / plan.files[0].name):
            plan.archive = plan.files[0].name
        if plan.archive is not None:
            return safe_extract(files / plan.archive, out, limits=limits, name=redact(text))
        publish(files, out)
        return out


@contextmanager
def staging_folder(out: Path, source: str) -> Iterator[Path]:
    """The hidden folder beside ``out`` where ``source`` is downloaded before publishing.

    Its name is fixed by ``out`` and ``source`` (without a URL's query), so a run that
    was killed leaves its ``.part`` files where the next run looks for them and resumes
    them; finished files of a killed run are fetched again (they are not validated).
    A lock keeps two downloads from sharing it. It is deleted when the download ends,
    except on an interrupt (Ctrl-C), which keeps it for the next run to resume.
    """
    key = hashlib.sha256(redact(source).encode()).hexdigest()[:12]
    folder = out.parent / f".{out.name}.download-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / ".lock", "a")  # noqa: SIM115 (closed below, after the folder goes)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DownloadError(
            source,
            f"another download into {out} is running",
            "Wait for it to finish, or download into another folder (--out).",
        ) from None
    keep = False
    try:
        for path in (folder / "files").rglob("*"):
            if path.is_file() and not path.name.endswith((".part", ".part.json")):
                path.unlink()
        yield folder
    except KeyboardInterrupt:
        keep = True
        raise
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
        lock.close()


def _plan(source: str, service: ServiceClientLike | None) -> _Plan:
    scheme = urllib.parse.urlparse(source).scheme
    if scheme == "tinker":
        return _tinker_plan(source, service)
    if scheme in ("http", "https", "file"):
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(source).path)).name
        name = name or "download"
        return _Plan([FileSpec(name, source)], sniff=True)
    raise UnsupportedSourceError(
        f"Unsupported source {source!r}: use a tinker:// path, an http(s):// or file:// URL, "
        "or a local tar file."
    )


def _tinker_plan(path: str, service: ServiceClientLike | None) -> _Plan:
    """The files of a ``tinker://`` path, through public ``RestClient`` calls only.

    Every backend answers the same calls the same way (the offline ones never read their
    store here), so a download tried offline succeeds or fails as it would on Tinker.
    """
    kind = _tinker_kind(path)
    rest = rest_client(service_or_default(service))  # None: the face's default, tk.connect()
    if kind == "external_weights":

        def sign() -> list[FileSpec]:
            response = rest.get_external_weights_urls(path).result()
            return [
                FileSpec(name, url, expires=response.expires)
                for name, url in sorted(response.urls.items())
            ]

        files = sign()
        if not files:
            raise UnsupportedSourceError(f"{path} has no files to download.")
        return _Plan(files, resign=sign)
    if hasattr(rest, "get_checkpoint_archive_url_from_tinker_path"):  # tinker < 0.38
        response = rest.get_checkpoint_archive_url_from_tinker_path(path).result()
        spec = FileSpec("archive.tar", response.url, expires=getattr(response, "expires", None))
        return _Plan([spec], archive="archive.tar")
    raise UnsupportedSourceError(not_downloadable(path, kind))


def _tinker_kind(path: str) -> str:
    """The kind of a ``tinker://<run>/<kind>/<name>`` path (``weights``,
    ``sampler_weights`` or ``external_weights``), as the SDK parses it; anything else is
    an ``InvalidTinkerPathError`` before any client is made."""
    try:
        parsed = types.ParsedCheckpointTinkerPath.from_tinker_path(path)
    except ValueError:
        raise InvalidTinkerPathError(path) from None
    kind, _, name = parsed.checkpoint_id.partition("/")
    if not parsed.training_run_id or not name:
        raise InvalidTinkerPathError(path)
    return kind


def not_downloadable(path: str, kind: str) -> str:
    """What to do with a ``weights``/``sampler_weights`` path, which tinker 0.38 (the
    service and every offline backend alike) cannot download: export it first."""
    if kind == "weights":
        how = (
            f"service.create_training_client_from_state({path!r}).result()"
            ".save_weights_external('<name>')"
        )
    else:
        how = (
            "training_client.save_weights_external('<name>') on the training client that "
            "saved it (or on one loaded from its training state with "
            "service.create_training_client_from_state(...))"
        )
    return (
        f"{path} cannot be downloaded directly with tinker 0.38: the archive-URL endpoint "
        "(get_checkpoint_archive_url_from_tinker_path) is gone, on Tinker and offline "
        f"alike. Export the weights first: {how}, then download "
        "tinker://<run>/external_weights/<name>; tinkerkit export (tk.export.export) "
        "takes this route by itself."
    )


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a tar archive (by content, not by name)."""
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False
