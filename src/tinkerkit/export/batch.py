"""Fetch the files of one checkpoint concurrently into a (staging) folder."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import httpx

from tinkerkit.export.budget import Budget
from tinkerkit.export.errors import DownloadError
from tinkerkit.export.fetch import Cancelled, Progress, RetryPolicy, fetch


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch: where it goes (relative name), its URL, what to check."""

    name: str
    url: str
    sha256: str | None = None
    expires: datetime | None = None


def safe_relative(name: str) -> PurePosixPath:
    """``name`` as a relative path that cannot leave its folder, else ``ValueError``.

    Example:
        >>> safe_relative("sub/adapter_config.json")
        PurePosixPath('sub/adapter_config.json')
    """
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise ValueError(f"unsafe file name {name!r}")
    return path


def fetch_many(
    files: list[FileSpec],
    folder: Path,
    *,
    client: httpx.Client | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
    max_workers: int = 4,
    sleep: Callable[[float], None] = time.sleep,
    budget: Budget | None = None,
) -> dict[str, Path]:
    """Fetch several files into ``folder`` concurrently (threads); skip ones already there.

    The first failure cancels the rest and is raised once every worker has stopped.
    ``budget`` (default ``Budget()``) caps the bytes of all files together and the time.

    Example:
        >>> fetch_many([FileSpec("a.json", "file:///tmp/a.json")], Path("staging"))
        {'a.json': PosixPath('staging/a.json')}
    """
    targets: dict[str, Path] = {}
    for spec in files:
        try:
            targets[spec.name] = folder.joinpath(*safe_relative(spec.name).parts)
        except ValueError:
            raise DownloadError(
                spec.url,
                f"the file name {spec.name!r} would leave the output folder",
                "The checkpoint listing is corrupt or malicious; nothing was downloaded.",
            ) from None
    budget = budget or Budget()
    bar = Progress(progress, label=f"{len(files)} file(s)")
    cancel = threading.Event()
    http = client or httpx.Client(timeout=(retry or RetryPolicy()).timeout, follow_redirects=True)

    def one(spec: FileSpec) -> Path:
        dest = targets[spec.name]
        if dest.is_file():  # fetched by an earlier pass (before URLs were re-signed)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            return fetch(
                spec.url,
                dest,
                client=http,
                sha256=spec.sha256,
                expires=spec.expires,
                retry=retry,
                progress=bar,
                cancel=cancel,
                sleep=sleep,
                budget=budget,
            )
        except BaseException:
            cancel.set()
            raise

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(files)))) as pool:
            futures = [pool.submit(one, spec) for spec in files]
            try:
                for future in futures:
                    future.exception()  # wait here, where Ctrl-C can stop the workers
            except BaseException:
                cancel.set()
                raise
        errors = [e for e in (f.exception() for f in futures) if e is not None]
        if errors:
            # Report the failure that caused the cancellation, not a cancelled sibling.
            raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        return {spec.name: f.result() for spec, f in zip(files, futures, strict=True)}
    finally:
        bar.close()
        if client is None:
            http.close()
