"""Bytes → raw records: JSONL (streamed in bounded lines), JSON arrays, CSV.

Each reader yields ``(line, parsed object or None, problem or None)``; the loaders
validate the objects against a schema and turn problems into ``DataError``s.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Iterator
from typing import IO, Any

from tinkerkit.data.limits import bounded_lines, too_large

RawRecord = tuple[int | None, Any, str | None]

TOO_DEEP = "is nested too deeply to read (JSON over ~900 levels deep); flatten it"
LINE_SUFFIXES = (".jsonl", ".ndjson", "")
JSON_CELLS = ("messages", "chosen", "rejected")
"""Columns (CSV, SQL) that may hold a JSON list of messages as text."""


def raw_records(handle: IO[bytes], suffix: str, limit: int) -> Generator[RawRecord]:
    """The records of an open binary file of format ``suffix`` (``.jsonl``, ``.json``,
    ``.csv``). JSONL lines over ``limit`` bytes are refused unread; JSON and CSV are
    read whole (their records are checked once parsed)."""
    if suffix in LINE_SUFFIXES:
        for number, size, raw in bounded_lines(handle, limit):
            if raw is None:
                yield number, None, too_large(size, limit, "the line")
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"is not valid UTF-8 (byte {exc.start} of the line)"
                continue
            if text.strip():
                yield number, *parse_line(text)
        return
    data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield line, None, "is not valid UTF-8"
        return
    if suffix == ".json":
        yield from _json_array(text)
    elif suffix == ".csv":
        yield from _csv_rows(text)


def parse_line(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg}, column {exc.colno})"
    except RecursionError:
        return None, TOO_DEEP


def json_cells(record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """``record`` with its message columns (a JSON list as text) parsed; or the problem."""
    for key in JSON_CELLS:
        value = record.get(key)
        if isinstance(value, str) and value.lstrip().startswith("["):
            parsed, problem = parse_line(value)
            if problem is not None:
                return None, f"column '{key}' {problem}"
            record[key] = parsed
    return record, None


def _json_array(text: str) -> Iterator[RawRecord]:
    """Elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield exc.lineno, None, f"is not valid JSON ({exc.msg})"
            return
        except RecursionError:
            yield 1, None, TOO_DEEP
            return
        yield 1, obj, None if isinstance(obj, dict) else "must be a JSON array of records"
        return
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield exc.lineno, None, f"is not valid JSON ({exc.msg})"
            return
        except RecursionError:
            yield line, None, TOO_DEEP
            return
        yield line, obj, None


def _csv_rows(text: str) -> Iterator[RawRecord]:
    # The whole file is in memory already: a cell as long as the file costs nothing more,
    # so csv's 128 KiB cell limit (a long chat in one cell) is lifted while reading it.
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        yield from _csv_records(csv.DictReader(io.StringIO(text)))
    finally:
        csv.field_size_limit(limit)


def _csv_records(reader: csv.DictReader[str]) -> Iterator[RawRecord]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"is not valid CSV ({exc})"
            return
        # An empty cell is a missing value, not an empty string.
        record, problem = json_cells({k: v for k, v in row.items() if v not in ("", None)})
        yield reader.line_num, record, problem
