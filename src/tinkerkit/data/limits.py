"""How big one record may be, checked before anything parses or tokenizes it.

A 200 MB one-line chat once went straight to the tokenizer (a Rust panic after ~8 GB of
memory); a 20 MB one took 45 s and 4 GB to be refused. Lines are now read in bounded
pieces and refused by size alone, and in-memory records by their text's size, before
any tokenizer sees them. The bound is far above any model's context (4 MiB of text is
about a million tokens); raise it per call (``max_record_bytes=``) or for the process:

    import tinkerkit.data.limits
    tinkerkit.data.limits.MAX_RECORD_BYTES = 64 * 2**20
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

MAX_RECORD_BYTES = 4 * 2**20
"""The largest record (a line of JSONL, a row, a chat's text) accepted, in bytes."""

_CHUNK = 2**20


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def record_limit(max_record_bytes: int | None) -> int:
    """``max_record_bytes``, or the process-wide ``MAX_RECORD_BYTES`` when None."""
    return MAX_RECORD_BYTES if max_record_bytes is None else max_record_bytes


def too_large(size: int, limit: int, what: str = "the record") -> str:
    """The message for a record over the limit: its size, the limit, what to do.

    Example:
        >>> too_large(5_000_000, 4 * 2**20)
        'the record is 5,000,000 bytes, over the limit of 4,194,304 bytes (max_record_bytes); ...'
    """
    return (
        f"{what} is {size:,} bytes, over the limit of {limit:,} bytes (max_record_bytes); "
        "split it, or raise max_record_bytes (tinkerkit.data.limits.MAX_RECORD_BYTES) "
        "if a model really needs it whole"
    )


def bounded_lines(handle: _Readable, limit: int) -> Iterator[tuple[int, int, bytes | None]]:
    """``(line number, size in bytes, line)`` for each line of a binary file, without its
    newline; the line is None when it is over ``limit`` bytes, and then never held in
    memory (it is read in pieces and counted). Empty lines are numbered, not yielded.

    Example:
        >>> list(bounded_lines(io.BytesIO(b'{"a": 1}\\n\\n' + b"x" * 9), limit=8))
        [(1, 8, b'{"a": 1}'), (3, 9, None)]
    """
    number = 0
    pending: list[bytes] = []
    size = 0
    while chunk := handle.read(_CHUNK):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            size += end - start
            number += 1
            if size > limit:
                yield number, size, None
            elif size:
                pending.append(chunk[start:end])
                yield number, size, b"".join(pending)
            pending.clear()
            size = 0
            start = end + 1
        size += len(chunk) - start
        if size <= limit:
            pending.append(chunk[start:])
        else:
            pending.clear()
    if size:
        yield number + 1, size, None if size > limit else b"".join(pending)


def text_bytes(obj: Any) -> int:
    """The UTF-8 size of the strings in ``obj`` (keys too): a record's text, as a file holds it.

    Example:
        >>> text_bytes({"messages": [{"role": "user", "content": "héllo"}]})
        29
    """
    total = 0
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return total
