"""Files and folders that appear whole or not at all.

Everything here writes beside the target (same folder, so same file system) under a
hidden temporary name and renames it into place: ``os.replace`` of a file and
``os.rename`` of a folder are atomic on POSIX, so a reader sees the old content or the
new, never half. On any exception the temporary is removed and the target is as it was.

This module imports nothing from tinkerkit, so every layer (backends included) may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "atomic_path",
    "atomic_text_writer",
    "publish_folder",
    "staged_folder",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _temp_beside(path: Path) -> Path:
    # Hidden (listings skip dot files) and unique per writer (several processes may race).
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk; best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; written by the block, it replaces ``path`` at the end.

    For writers that want a file name rather than bytes (``fig.savefig``,
    ``save_file``). If the block raises or writes nothing, ``path`` is left as it was.

    Example:
        >>> with atomic_path("loss.png") as tmp:
        ...     fig.savefig(tmp, format="png")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text_writer(path: str | Path) -> Iterator[TextIO]:
    """An open text file beside ``path`` (UTF-8, ``\\n`` newlines); it replaces ``path`` on success.

    The data is flushed and fsynced before the rename, so after a crash ``path`` holds
    the old text or the new one.

    Example:
        >>> with atomic_text_writer("out.txt") as f:
        ...     f.write("all or nothing\\n")
    """
    with atomic_path(path) as tmp, tmp.open("x", encoding="utf-8", newline="\n") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(Path(path).parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (fsynced, then renamed into place).

    Example:
        >>> write_bytes_atomic("weights.bin", b"\\x00\\x01")
    """
    with atomic_path(path) as tmp, tmp.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(Path(path).parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all.

    Example:
        >>> write_text_atomic("notes.txt", "hello\\n")
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (sorted keys) to ``path`` whole or not at all.

    Example:
        >>> write_json_atomic("run.json", {"step": 3})
    """
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=True))


def publish_folder(folder: str | Path, final: str | Path) -> None:
    """Rename the finished ``folder`` to ``final``, which must be absent or an empty folder.

    Raises ``OSError`` (``FileExistsError`` or ``ENOTEMPTY``) when ``final`` already has
    content, e.g. when another writer got there first; ``folder`` is then left for the
    caller to remove.

    Example:
        >>> publish_folder(".merged.tmp", "merged")
    """
    final = Path(final)
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()  # POSIX renames over an empty folder, Windows does not
    os.rename(folder, final)


def discard_folder(folder: str | Path) -> None:
    """Remove ``folder`` whole: renamed aside first, so no reader sees it half deleted.

    Example:
        >>> discard_folder("runs/old/checkpoint-3")
    """
    folder = Path(folder)
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex}")
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(
    final: str | Path,
    *,
    prefix: str | None = None,
    publish: Callable[[Path, Path], None] = publish_folder,
) -> Iterator[Path]:
    """A fresh hidden folder beside ``final``; fill it in the block and it becomes ``final``.

    ``final`` must be absent or empty when the block ends (see ``publish_folder``). On
    any exception, the rename's included, the staged folder is removed and ``final``
    is untouched. ``prefix`` names the staged folder (default ``.<final name>.``);
    ``publish(staged, final)`` moves it into place (say, to replace an old one first).

    Example:
        >>> with staged_folder("tokenizer") as tmp:
        ...     (tmp / "tokenizer.json").write_text("{}")
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{prefix or f'.{final.name}.'}{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        yield tmp
        publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
