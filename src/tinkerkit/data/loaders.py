"""Load training records from JSONL, JSON, CSV (or a local Hugging Face dataset): local
files, any fsspec URL (``s3://``, ``gs://``, ``hf://``, ``https://``; streamed), or SQLite
tables and queries (``sqlite:///FILE.db?table=NAME``, ``load_sql``).

Every problem becomes a ``DataError`` naming the file, the line and the field: bad
JSON, JSON nested too deeply to read, missing or mistyped fields, unknown roles, empty
conversations, no assistant turn, bytes that are not UTF-8, text with lone surrogates
(``"\\ud800"``, which no tokenizer can encode), a path that is a folder or cannot be
read, an image part whose file does not exist (relative image paths are read from the
data file's folder, ``data.vision``). ``errors`` chooses what happens then:

- ``"raise"`` (default): stop at the first bad record;
- ``"collect"``: read everything, then raise one ``DataError`` listing every bad line;
- ``"skip"``: drop bad records and log how many were dropped.

Loading only reads; nothing is ever written.

    chats = load_chat_jsonl("chats.jsonl")                  # list[Conversation]
    for pair in iter_records("big.jsonl", PromptCompletion):  # streaming
        ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from tinkerkit.data import sql, storage
from tinkerkit.data.formats import RawRecord, raw_records
from tinkerkit.data.limits import record_limit, text_bytes, too_large
from tinkerkit.data.schemas import Conversation, PreferencePair, PromptCompletion, RLPrompt
from tinkerkit.data.vision import resolve_image_paths
from tinkerkit.errors import DataError

logger = logging.getLogger("tinkerkit")

Errors = Literal["raise", "collect", "skip"]
R = TypeVar("R", bound=BaseModel)
_Problem = tuple[int | None, str | None, str]
StorageOptions = Mapping[str, Any] | None
Source = str | Path | sql.SQLSource
"""A file, a URL (``s3://...``, ``sqlite:///...``), or an SQLite table or query."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def field_name(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the field a user reads: ``messages[1].role``.

    Example:
        >>> field_name(("messages", 1, "role"))
        'messages[1].role'
    """
    out = ""
    for part in loc:
        if part == "":  # the tag of a list content (``schemas.Content``), not a field
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain_error(error: dict[str, Any]) -> str:
    """What a pydantic error means, in words about the data (no pydantic jargon).

    Example:
        >>> explain_error({"type": "missing", "loc": ("content",)})
        'is missing'
    """
    kind = error.get("type", "")
    if kind == "missing":
        return "is missing"
    if kind == "literal_error" and error["loc"][-1] == "role":
        return f"unknown role {error.get('input')!r} (expected system, user, assistant or tool)"
    if kind == "too_short" and error["loc"][-1] == "messages":
        return "is empty: a conversation needs at least one message"
    if kind == "extra_forbidden":
        return "is not a known field"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


def surrogate_field(obj: Any, where: str = "") -> str | None:
    """The field of ``obj`` (``""`` for ``obj`` itself) holding a string with a lone
    surrogate, or None. Such strings come from ``"\\ud800"`` escapes without their
    pair; no tokenizer (and no UTF-8 file) can take them.

    Example:
        >>> surrogate_field({"messages": [{"content": "a\\ud800"}]})
        'messages[0].content'
    """
    # A stack, not recursion: JSON just under the parser's depth limit must not overflow.
    stack: list[tuple[str, Any]] = [(where, obj)]
    while stack:
        name, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return name
        elif isinstance(value, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
    return None


def _surrogate_problem(obj: Any, line: int | None) -> _Problem | None:
    field = surrogate_field(obj)
    if field is None:
        return None
    return (
        line,
        field or None,
        "contains a lone surrogate (a \\ud800-\\udfff escape without its pair), which is "
        "not text: fix the encoding of the string",
    )


def _validate(
    schema: type[R], obj: Any, line: int | None, limit: int
) -> tuple[R | None, list[_Problem]]:
    if not isinstance(obj, dict):
        return None, [(line, None, f"must be a JSON object, got {type(obj).__name__}")]
    size = text_bytes(obj)
    if size > limit:
        return None, [(line, None, too_large(size, limit, "the record's text"))]
    surrogate = _surrogate_problem(obj, line)
    if surrogate is not None:
        return None, [surrogate]
    try:
        return schema.model_validate(obj), []
    except ValidationError as exc:
        problems: list[_Problem] = []
        for error in exc.errors():
            field = field_name(tuple(error["loc"])) or None
            problems.append((line, field, explain_error(dict(error))))
        return None, problems[:1]


def validate_record(
    schema: type[R], obj: Any, where: str, *, max_record_bytes: int | None = None
) -> R:
    """One in-memory record, validated like a file's; ``DataError`` naming ``where`` otherwise.

    Example:
        >>> validate_record(Conversation, {"messages": []}, "data[3]")
        DataError: data[3]: field 'messages': is empty: a conversation needs at least one message
    """
    record, problems = _validate(schema, obj, None, record_limit(max_record_bytes))
    if record is None:
        _, field, message = problems[0]
        raise DataError(where, None, field, message)
    return record


@dataclass(frozen=True)
class _Opened:
    name: str
    """The source as errors name it (a URL without secrets, a database and table)."""
    unit: str
    records: Generator[RawRecord]
    folder: Path | None = None
    """Where relative image paths are read from: the local file's (or database's) folder."""


def _open(source: Source, stack: ExitStack, storage_options: StorageOptions, limit: int) -> _Opened:
    """The raw records of a local file, a URL (fsspec) or an SQLite table/query, closed
    with ``stack`` (a reader stopped early still closes its file or database here, in
    this thread, not whenever the garbage collector gets to it)."""
    opened = _open_source(source, stack, storage_options, limit)
    stack.callback(opened.records.close)
    return opened


def _open_source(
    source: Source, stack: ExitStack, storage_options: StorageOptions, limit: int
) -> _Opened:
    if isinstance(source, sql.SQLSource) or sql.is_sqlite_url(source):
        table = source if isinstance(source, sql.SQLSource) else sql.parse_sqlite_url(str(source))
        folder = Path(table.database).expanduser().absolute().parent
        return _Opened(table.name, "row", sql.sql_records(table, limit), folder)
    if storage.is_url(source):
        url = str(source)
        name, suffix = storage.display_url(url), storage.url_suffix(url)
        if suffix not in DATA_SUFFIXES:
            raise DataError(name, None, None, "unsupported format: use .jsonl, .json or .csv")
        handle = stack.enter_context(storage.open_url(url, storage_options))
        return _Opened(name, "line", raw_records(handle, suffix, limit))
    file = check_data_file(source)
    handle = stack.enter_context(file.open("rb"))
    records = raw_records(handle, file.suffix.lower(), limit)
    return _Opened(str(file), "line", records, file.absolute().parent)


def iter_records(
    path: Source,
    schema: type[R],
    *,
    errors: Errors = "raise",
    storage_options: StorageOptions = None,
    max_record_bytes: int | None = None,
) -> Iterator[R]:
    """Stream validated records from ``path``: a ``.jsonl``, ``.json`` or ``.csv`` file, the
    same at any fsspec URL (``s3://``, ``gs://``, ``hf://``, ``https://``; options such as
    ``endpoint_url`` in ``storage_options``), or ``sqlite:///FILE.db?table=NAME`` (or
    ``?query=SELECT...``). A line or record over ``max_record_bytes`` (default
    ``tinkerkit.data.limits.MAX_RECORD_BYTES``, 4 MiB) is refused before it is parsed.

    Example:
        >>> for chat in iter_records("s3://bucket/chats.jsonl", Conversation):
        ...     print(len(chat.messages))
    """
    if errors not in ("raise", "collect", "skip"):
        raise ValueError(f"errors must be 'raise', 'collect' or 'skip', got {errors!r}")
    limit = record_limit(max_record_bytes)
    with ExitStack() as stack:
        opened = _open(path, stack, storage_options, limit)
        name, unit, records = opened.name, opened.unit, opened.records
        problems: list[_Problem] = []
        count = 0
        while True:
            try:
                line, obj, problem = next(records)
            except StopIteration:
                break
            except OSError as exc:
                raise DataError(
                    name, None, None, f"cannot be read ({exc.strerror or exc})"
                ) from None
            found: list[_Problem]
            record = None
            image = None if problem is not None else resolve_image_paths(obj, opened.folder)
            if problem is not None:
                found = [(line, None, problem)]
            elif image is not None:
                found = [(line, *image)]
            else:
                record, found = _validate(schema, obj, line, limit)
            if found:
                if errors == "raise":
                    ln, field, message = found[0]
                    raise DataError(name, ln, field, message, unit=unit)
                problems.extend(found)
                continue
            count += 1
            assert record is not None
            yield record
    if problems and errors == "collect":
        ln, field, message = problems[0]
        raise DataError(name, ln, field, message, problems=problems, unit=unit)
    if problems:
        logger.warning("%s: skipped %d bad records (kept %d)", name, len(problems), count)
    if count == 0 and not problems:
        raise DataError(name, None, None, "contains no records")


def first_keys(source: str | Path, *, storage_options: StorageOptions = None) -> set[str]:
    """The fields of the first record of a JSONL file, URL or SQL source (empty for JSON,
    CSV, or a first line that is not a JSON object): enough to tell prompt/completion
    pairs from chats without reading on. ``DataError`` when the source cannot be opened.

    Example:
        >>> first_keys("pairs.jsonl")
        {'prompt', 'completion'}
    """
    suffix = storage.url_suffix(str(source)) if storage.is_url(source) else Path(source).suffix
    if not sql.is_sqlite_url(source) and suffix.lower() in (".json", ".csv"):
        return set()
    with ExitStack() as stack:
        records = _open(source, stack, storage_options, record_limit(None)).records
        for _, obj, _ in records:
            return set(obj) if isinstance(obj, dict) else set()
    return set()


DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", "")


def check_data_file(path: str | Path, suffixes: tuple[str, ...] | None = DATA_SUFFIXES) -> Path:
    """``path`` as a ``Path`` if it is a file we can read (with one of ``suffixes``,
    unless None); ``DataError`` saying what it is instead (missing, a folder, not a
    regular file, unreadable, another format).

    Example:
        >>> check_data_file("runs/")
        DataError: runs: is a folder, not a data file: give a .jsonl, .json or .csv file
    """
    file = Path(path)
    kinds = "a .jsonl, .json or .csv file" if suffixes == DATA_SUFFIXES else "a file"
    if file.is_dir():
        raise DataError(str(file), None, None, f"is a folder, not a data file: give {kinds}")
    if not file.exists():
        raise DataError(str(file), None, None, "no such file")
    if not file.is_file():
        raise DataError(str(file), None, None, f"is not a regular file: give {kinds}")
    if suffixes is not None and file.suffix.lower() not in suffixes:
        raise DataError(str(file), None, None, "unsupported format: use .jsonl, .json or .csv")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise DataError(str(file), None, None, f"cannot be read ({exc.strerror or exc})") from None
    return file


def load_records(
    path: Source,
    schema: type[R],
    *,
    errors: Errors = "raise",
    storage_options: StorageOptions = None,
    max_record_bytes: int | None = None,
) -> list[R]:
    """All validated records of ``path`` (a file, a URL, an SQLite table) as a list
    (see ``iter_records``)."""
    return list(
        iter_records(
            path,
            schema,
            errors=errors,
            storage_options=storage_options,
            max_record_bytes=max_record_bytes,
        )
    )


def load_chat_jsonl(
    path: str | Path, *, errors: Errors = "raise", **source: Any
) -> list[Conversation]:
    """Chats (``{"messages": [...]}`` per line) from JSONL, JSON or CSV, local or at a URL,
    or an SQLite table (``sqlite:///chats.db?table=chats``). ``storage_options=`` and
    ``max_record_bytes=`` as for ``iter_records``.

    Example:
        >>> chats = load_chat_jsonl("chats.jsonl")
        >>> chats[0].messages[-1].role
        'assistant'
    """
    return load_records(path, Conversation, errors=errors, **source)


def load_prompt_completions(
    path: str | Path, *, errors: Errors = "raise", **source: Any
) -> list[PromptCompletion]:
    """``{"prompt", "completion"}`` records (any source ``load_chat_jsonl`` takes)."""
    return load_records(path, PromptCompletion, errors=errors, **source)


def load_preference_pairs(
    path: str | Path, *, errors: Errors = "raise", **source: Any
) -> list[PreferencePair]:
    """``{"prompt", "chosen", "rejected"}`` records (or two chats), from any source."""
    return load_records(path, PreferencePair, errors=errors, **source)


def load_rl_prompts(path: str | Path, *, errors: Errors = "raise", **source: Any) -> list[RLPrompt]:
    """``{"prompt"}`` or ``{"messages"}`` records with any extra fields for rewards."""
    return load_records(path, RLPrompt, errors=errors, **source)


def load_sql(
    database: str | Path,
    schema: type[R],
    *,
    table: str | None = None,
    query: str | None = None,
    errors: Errors = "raise",
    max_record_bytes: int | None = None,
) -> list[R]:
    """Records from an SQLite table or query (a Cloudflare D1 export is SQLite), one per
    row, fields by column name; errors name the database, the table or query and the
    row. The database is opened read-only.

    Example:
        >>> pairs = load_sql("pipeline.db", PreferencePair, table="pairs")
        >>> chats = load_sql("pipeline.db", Conversation,
        ...                  query="SELECT messages FROM chats WHERE split = 'train'")
    """
    source = sql.SQLSource(str(database), table, query)
    return load_records(source, schema, errors=errors, max_record_bytes=max_record_bytes)


def load_hf_dataset(
    name_or_path: str, schema: type[R], *, split: str = "train", errors: Errors = "raise"
) -> list[R]:
    """Records from a Hugging Face dataset already on disk (``pip install datasets``).

    Nothing is downloaded: a hub name only works if it is in the local cache.
    """
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("loading Hugging Face datasets needs: pip install datasets") from exc
    if Path(name_or_path).is_dir():
        try:
            loaded = datasets.load_from_disk(name_or_path)
        except (FileNotFoundError, ValueError):
            loaded = datasets.load_dataset(name_or_path, split=split)
    else:
        loaded = datasets.load_dataset(
            name_or_path, split=split, download_mode="reuse_cache_if_exists"
        )
    if isinstance(loaded, dict) or hasattr(loaded, "keys"):
        loaded = loaded[split]
    out: list[R] = []
    problems: list[_Problem] = []
    for index, row in enumerate(loaded):
        record, found = _validate(schema, dict(row), index, record_limit(None))
        if found and errors == "raise":
            ln, field, message = found[0]
            raise DataError(f"{name_or_path} (row)", ln, field, message)
        problems.extend(found)
        if record is not None:
            out.append(record)
    if problems and errors == "collect":
        ln, field, message = problems[0]
        raise DataError(f"{name_or_path} (row)", ln, field, message, problems=problems)
    return out
