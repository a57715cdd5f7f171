"""The files of a base model folder, without trusting the folder.

A base folder is read, never written, but what it names is followed: an index json
whose ``weight_map`` says ``"../x/model.safetensors"`` or ``"/abs/path"``, or a
``tokenizer.json`` that is a symlink to ``/etc/shadow``, would make an export read
(and a naive one write) outside it. So every file is a plain name in the folder, and
a symlink may only point inside it, or, for a Hugging Face cache snapshot
(``models--org--name/snapshots/<rev>/``), into that repository's ``blobs/`` folder,
where the cache keeps the real files.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from tinkerkit.export.errors import BaseModelError


def allowed_roots(base_dir: Path) -> list[Path]:
    """Where the files of ``base_dir`` may really live (the folder; a cache's blobs).

    Example:
        >>> allowed_roots(Path("hub/models--org--m/snapshots/abc"))[-1].name
        'blobs'
    """
    root = base_dir.resolve()
    roots = [root]
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        roots.append(root.parent.parent / "blobs")
    return roots


def base_file(base_dir: Path, name: str, what: str) -> Path:
    """``base_dir / name`` if it is a regular file of the folder; ``BaseModelError`` otherwise.

    ``what`` says where the name came from (``"weight_map['lm_head.weight']"``).

    Example:
        >>> base_file(Path("tiny"), "model.safetensors", "the shard")
        PosixPath('tiny/model.safetensors')
    """
    if not isinstance(name, str) or not is_plain_name(name):
        raise BaseModelError(
            f"{base_dir}: {what} is {name!r}, which is not a file name in the model folder "
            "(absolute paths, '..' and sub-folders are refused). The folder is corrupt or "
            "was tampered with; use a clean copy of the model."
        )
    path = base_dir / name
    check_link(base_dir, path)
    try:
        mode = path.stat().st_mode
    except OSError:
        raise BaseModelError(
            f"{base_dir}: {what} names {name}, which is missing. Use a complete copy of the model."
        ) from None
    if not stat.S_ISREG(mode):
        raise BaseModelError(
            f"{path} ({what}) is not a regular file; use a clean copy of the model."
        )
    return path


def check_link(base_dir: Path, path: Path) -> None:
    """Refuse ``path`` if it is a symlink whose target lies outside ``base_dir``'s roots."""
    if not path.is_symlink():
        return
    target = path.resolve()
    if not any(target.is_relative_to(root) for root in allowed_roots(base_dir)):
        raise BaseModelError(
            f"{path} is a symbolic link to {os.readlink(path)}, outside the model folder "
            f"{base_dir}; refusing to read it. Replace the link with the file itself."
        )


def side_files(base_dir: Path) -> list[Path]:
    """The regular files at the top of ``base_dir`` (links checked; folders, FIFOs skipped)."""
    files = []
    for path in sorted(base_dir.iterdir()):
        check_link(base_dir, path)
        try:
            if stat.S_ISREG(path.stat().st_mode):
                files.append(path)
        except OSError:  # a dangling link: nothing to copy
            continue
    return files


def is_plain_name(name: str) -> bool:
    """Whether ``name`` is one file name: no separator, no ``..``, no drive, not empty."""
    return bool(name) and name not in (".", "..") and not re.search(r"[/\\\x00]|^[A-Za-z]:", name)
