"""``download(source, out_dir)``: a checkpoint from anywhere into a local folder.

Sources: ``tinker://<run>/{weights,sampler_weights,external_weights}/<name>``, an
http(s) or ``file://`` URL, or a local tar. Routes for ``tinker://`` paths:

- ``external_weights``: ``RestClient.get_external_weights_urls`` (tinker 0.38) gives one
  signed URL per file; each is fetched (concurrently), re-signed once if they expire.
- ``weights`` / ``sampler_weights``: an older SDK's
  ``get_checkpoint_archive_url_from_tinker_path`` (a tar, extracted safely) when the
  client has it; on the offline backends the checkpoint's files in the local store;
  otherwise a clear ``UnsupportedSourceError`` saying how to export the weights.

Everything is staged in a hidden folder next to ``out_dir`` and published with one
rename at the end. On failure the staging folder (with any ``.part`` files) is
deleted: ``out_dir`` is then exactly as before (absent, or empty). Resume works
across the retries of one call, not across calls.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from tinkerkit.backends.store import parse_tinker_path
from tinkerkit.export.batch import FileSpec, fetch_many
from tinkerkit.export.errors import OutputExistsError, UnsupportedSourceError, UrlExpiredError
from tinkerkit.export.fetch import RetryPolicy
from tinkerkit.export.safe_tar import Limits, safe_extract

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
    service: Any = None,
    progress: bool = True,
    sha256: str | Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    max_workers: int = 4,
    client: httpx.Client | None = None,
    limits: Limits | None = None,
) -> Path:
    """Download a checkpoint into ``out_dir`` (which must be new or empty); returns it.

    ``service`` is a ``tk.connect(...)`` client (default: ``tk.connect()``), needed only
    for ``tinker://`` sources. ``sha256`` is one digest (single file) or a name → digest map.

    Example:
        >>> service = tk.connect("local")
        >>> tk.export.download("tinker://run/sampler_weights/final", "weights/", service=service)
        PosixPath('weights')
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(str(out))
    text = str(source)
    local = Path(text)
    if "://" not in text:
        if local.is_file():
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
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.download-", dir=out.parent))
    try:
        files = staging / "files"
        kw: dict[str, Any] = dict(
            client=client, retry=retry, progress=progress, max_workers=max_workers
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
            return safe_extract(files / plan.archive, out, limits=limits)
        if out.exists():
            out.rmdir()
        os.rename(files, out)
        return out
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plan(source: str, service: Any) -> _Plan:
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


def _tinker_plan(path: str, service: Any) -> _Plan:
    _run, kind, _name = parse_tinker_path(path)
    if service is None:
        import tinkerkit as tk

        service = tk.connect()
    from tinkerkit.connect import rest_client

    rest = rest_client(service)
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
    local = offline_files(service, rest, path)
    if local is not None:
        files = [FileSpec(name, p.resolve().as_uri()) for name, p in sorted(local.items())]
        archive = next((f.name for f in files if f.name.endswith(ARCHIVE_SUFFIXES)), None)
        return _Plan(files, archive=archive if len(files) == 1 else None)
    raise UnsupportedSourceError(
        f"{path} cannot be downloaded directly with tinker 0.38: the archive-URL endpoint "
        "(get_checkpoint_archive_url_from_tinker_path) is gone. Export the weights first: "
        "training_client.save_weights_external('<name>') (for a saved state: "
        f"service.create_training_client_from_state({path!r}).result()"
        ".save_weights_external('<name>')), then download "
        "tinker://<run>/external_weights/<name>."
    )


def offline_files(service: Any, rest: Any, path: str) -> dict[str, Path] | None:
    """The files of ``path`` in an offline backend's checkpoint store, or None online.

    The offline clients keep their store at ``._context.store``; the official clients
    have no such attribute, so this is None for them.
    """
    for client in (rest, service):
        store = getattr(getattr(client, "_context", None), "store", None)
        if store is not None and hasattr(store, "files"):
            files: dict[str, Path] = store.files(path)
            return files
    return None


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a tar archive (by content, not by name)."""
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False
