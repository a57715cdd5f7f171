"""Q&A pairs → chat JSONL (the format SFT loaders read)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tinkerkit.atomic import atomic_text_writer
from tinkerkit.data.notes.qa import QAPair

__all__ = ["atomic_writer", "write_chat_jsonl"]

# One implementation for the whole package; the old name stays importable from here.
atomic_writer = atomic_text_writer


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
