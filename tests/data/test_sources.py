"""tinkerkit.data.sources.coerce_records: a path or a list → records."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinkerkit.data.sources import coerce_records
from tinkerkit.errors import DataError


def _lines(path: str | Path) -> list[str]:
    return Path(path).read_text().split()


def _upper(item: object, where: str) -> str:
    if not isinstance(item, str):
        raise DataError(where, None, None, "not a string")
    return item.upper()


def test_a_path_goes_to_the_file_loader_as_given(tmp_path):
    (tmp_path / "f.txt").write_text("a b\n")
    got = coerce_records(str(tmp_path / "f.txt"), from_file=_lines, from_item=_upper, empty="-")
    assert got == ["a", "b"]  # from_file's records, untouched by from_item


def test_a_list_goes_item_by_item_with_its_place():
    assert coerce_records(("a", "b"), from_file=_lines, from_item=_upper, empty="-") == ["A", "B"]
    with pytest.raises(DataError, match=r"prompts\[1\]"):
        coerce_records(["a", 3], from_file=_lines, from_item=_upper, empty="-", label="prompts")


def test_an_empty_list_is_a_data_error_naming_the_label():
    with pytest.raises(DataError, match=r"prompts.*has no prompts"):
        coerce_records(
            [], from_file=_lines, from_item=_upper, empty="has no prompts", label="prompts"
        )
