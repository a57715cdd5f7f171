"""SQLite tables and queries as records (Cloudflare D1 is SQLite too): one record per
row, keyed by column name. NULL is a missing value; a ``messages``/``chosen``/
``rejected`` column may hold a JSON list of messages as text (like CSV cells).

A source is ``sqlite:///relative.db?table=pairs``, ``sqlite:////abs/path.db?table=pairs``
or ``...?query=SELECT prompt, chosen, rejected FROM pairs WHERE split='train'`` (URL-
encoded), or ``tk.data.load_sql(database, schema, table=... | query=...)``. The database
is opened read-only: loading never writes, nor creates an empty database for a typo.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tinkerkit.data.formats import RawRecord, json_cells
from tinkerkit.data.limits import text_bytes, too_large
from tinkerkit.errors import DataError

SCHEME = "sqlite://"


def is_sqlite_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(SCHEME)


@dataclass(frozen=True)
class SQLSource:
    """A database file and what to read from it: a table or a query."""

    database: str
    table: str | None = None
    query: str | None = None

    @property
    def name(self) -> str:
        """How errors name it: ``pairs.db (table pairs)``."""
        what = f"table {self.table}" if self.table else f"query {self.query!r}"
        return f"{self.database} ({what})"


def parse_sqlite_url(url: str) -> SQLSource:
    """``sqlite:///pairs.db?table=pairs`` → ``SQLSource("pairs.db", table="pairs")``
    (three slashes: a relative path; four: an absolute one, as SQLAlchemy writes them).

    Example:
        >>> parse_sqlite_url("sqlite:////data/x.db?query=SELECT%20*%20FROM%20t").query
        'SELECT * FROM t'
    """
    parts = urlsplit(url)
    database = unquote(parts.path)
    database = database[1:] if database.startswith("/") else database
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - {"table", "query"})
    if not database or unknown:
        raise DataError(
            url,
            None,
            None,
            (f"unknown option {unknown[0]!r}; " if unknown else "names no database file; ")
            + "write sqlite:///FILE.db?table=NAME or sqlite:///FILE.db?query=SELECT...",
        )
    return SQLSource(database, options.get("table"), options.get("query"))


def _connect(database: str) -> sqlite3.Connection:
    path = Path(database).expanduser()
    if path.is_dir():
        raise DataError(database, None, None, "is a folder, not an SQLite database")
    if not path.exists():
        raise DataError(database, None, None, "no such database file")
    try:
        return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(database, None, None, f"cannot be opened ({exc})") from None


def _tables(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
    return sorted(name for (name,) in rows if not name.startswith("sqlite_"))


def _statement(connection: sqlite3.Connection, source: SQLSource) -> str:
    if source.table and source.query:
        raise DataError(source.database, None, None, "give a table or a query, not both")
    if source.query:
        return source.query
    tables = _tables(connection)
    listed = ", ".join(tables) or "none"
    if source.table is None:
        raise DataError(
            source.database, None, None, f"say which table to read: ?table=NAME (tables: {listed})"
        )
    if source.table not in tables:
        raise DataError(source.name, None, None, f"no such table (tables: {listed})")
    return 'SELECT * FROM "{}"'.format(source.table.replace('"', '""'))


def sql_records(source: SQLSource, limit: int) -> Generator[RawRecord]:
    """``(row number, record or None, problem)`` per row, streamed from the cursor."""
    connection = _connect(source.database)
    try:
        try:
            cursor = connection.execute(_statement(connection, source))
        except sqlite3.Error as exc:
            raise DataError(source.name, None, None, f"cannot be read ({exc})") from None
        columns = [column[0] for column in cursor.description or ()]
        number = 0
        while True:
            try:
                row = cursor.fetchone()
            except sqlite3.Error as exc:
                raise DataError(
                    source.name, number + 1, None, f"cannot be read ({exc})", unit="row"
                ) from None
            if row is None:
                return
            number += 1
            cells = {k: v for k, v in zip(columns, row, strict=True) if v is not None}
            blobs = [k for k, v in cells.items() if isinstance(v, bytes)]
            if blobs:
                yield number, None, f"column '{blobs[0]}' holds bytes (a BLOB), not text"
                continue
            size = text_bytes(cells)
            if size > limit:
                yield number, None, too_large(size, limit, "the row")
                continue
            yield number, *json_cells(cells)
    finally:
        connection.close()
