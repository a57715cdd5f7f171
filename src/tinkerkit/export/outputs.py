"""The output folder of every export step: new or empty, written aside, renamed in.

Each step writes into a hidden temporary folder next to ``out`` and renames it into
place at the end, so a failure leaves neither a half-written ``out`` nor anything
else behind. ``out`` must not be a symlink: its files would land wherever it points.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tinkerkit.atomic import publish_folder, staged_folder
from tinkerkit.export.errors import ExportError, OutputExistsError
from tinkerkit.paths import holds_something


def check_out_dir(out: Path) -> None:
    """Raise ``OutputExistsError`` unless ``out`` is absent or an empty real folder.

    Example:
        >>> check_out_dir(Path("new-folder"))
    """
    if out.is_symlink():
        raise OutputExistsError(str(out), "is a symbolic link")
    if holds_something(out):
        raise OutputExistsError(str(out))


@contextmanager
def staged_output(out: Path, step: str) -> Iterator[Path]:
    """A fresh temporary folder beside ``out``, renamed to ``out`` when the block succeeds.

    Example:
        >>> with staged_output(Path("merged"), "merge") as tmp:
        ...     (tmp / "config.json").write_text("{}")
    """
    check_out_dir(out)
    try:
        with staged_folder(out, prefix=f".{out.name}.{step}-") as tmp:
            yield tmp
            check_out_dir(out)  # someone may have written there meanwhile
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ExportError(
            f"Writing {out} failed: the disk is full ({exc.strerror}); nothing was kept. "
            "Free some space or write somewhere else (--out)."
        ) from None


def publish(folder: Path, out: Path) -> None:
    """Rename ``folder`` to ``out`` (which is absent or an empty folder)."""
    check_out_dir(out)
    publish_folder(folder, out)
