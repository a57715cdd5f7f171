"""Atomic file writes, and Q&A pairs → chat JSONL (the format SFT loaders read)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from tinkerkit.data.notes.qa import QAPair

__all__ = ["atomic_writer", "write_chat_jsonl"]


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[TextIO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one step.

    If the ``with`` block raises, the temporary file is removed and ``path`` is left as it
    was, so readers never see a half-written file (``os.replace`` is atomic on POSIX and
    Windows when both names are on the same file system, hence the same folder).

    Example:
        >>> with atomic_writer("out.txt") as f:
        ...     f.write("all or nothing\\n")
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_chat_jsonl(
    pairs: Iterable[QAPair], out_path: str | Path, system_prompt: str | None = None
) -> int:
    """Write one ``{"messages": [...]}`` chat per pair to ``out_path``; returns the count.

    Each line holds an optional system message, the user question and the assistant
    answer. The file is written atomically: on any error no partial file is left behind
    and an existing file at ``out_path`` is untouched.

    Example:
        >>> write_chat_jsonl([QAPair("Who made Pebble?", "Ada Quill.")], "train.jsonl")
        1
    """
    count = 0
    with atomic_writer(out_path) as handle:
        for pair in pairs:
            line = json.dumps({"messages": pair.to_messages(system_prompt)}, ensure_ascii=False)
            handle.write(line + "\n")
            count += 1
    return count
