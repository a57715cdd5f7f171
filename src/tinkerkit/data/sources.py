"""A path or an in-memory list → records: the one rule every loop's ``data=`` follows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tinkerkit.errors import DataError

__all__ = ["coerce_records"]

R = TypeVar("R")


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
