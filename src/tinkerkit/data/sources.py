"""A path, a URL or an in-memory list → records: the one rule every loop's ``data=`` follows.

A path may be a local file or a URL: any fsspec URL (``s3://``, ``gs://``, ``hf://``,
``https://``) or an SQLite table, ``sqlite:///FILE.db?table=NAME`` (see ``loaders``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tinkerkit.errors import DataError

__all__ = ["coerce_records", "is_url"]

R = TypeVar("R")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def coerce_records(
    data: str | Path | Iterable[Any],
    *,
    from_file: Callable[[str | Path], Sequence[R]],
    from_item: Callable[[Any, str], R],
    empty: str,
    label: str = "data",
) -> list[R]:
    """Records from a file (``from_file(path)``) or a list (``from_item(item, "data[i]")``).

    A path is handed to ``from_file`` as given (it checks the file and its content); each
    item of a list goes through ``from_item`` with its place (``label[i]``) for error
    messages, and an empty list is a ``DataError`` saying ``label`` ``empty``.

    Example:
        >>> lines = lambda path: Path(path).read_text().split()
        >>> coerce_records(["a", "b"], from_file=lines, from_item=lambda s, _: s.upper(),
        ...                empty="has no lines")
        ['A', 'B']
    """
    if isinstance(data, str | Path):
        return list(from_file(data))
    records = [from_item(item, f"{label}[{index}]") for index, item in enumerate(data)]
    if not records:
        raise DataError(label, None, None, empty)
    return records


def is_url(source: object) -> bool:
    """Whether ``source`` is a URL string (``s3://...``, ``sqlite:///...``), which must stay
    a string: ``Path("s3://b/k")`` is ``s3:/b/k``, a different (local) path.

    Example:
        >>> is_url("sqlite:///pairs.db?table=pairs"), is_url("data/pairs.jsonl")
        (True, False)
    """
    return isinstance(source, str) and _URL.match(source) is not None
