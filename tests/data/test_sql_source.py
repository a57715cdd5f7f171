"""SQLite tables and queries as records (a real database file): rows → records by column
name, errors naming the database, the table or query and the row; the CLI and every loop
source take ``sqlite:///FILE.db?table=NAME``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

import tinkerkit as tk
from tinkerkit.cli import main
from tinkerkit.data.schemas import Conversation, PreferencePair
from tinkerkit.errors import DataError
from tinkerkit.train import preference_data, rl_sampling, sft_data


def _messages(i: int) -> str:
    return json.dumps(
        [{"role": "user", "content": f"Code word {i}?"}, {"role": "assistant", "content": f"w{i}x"}]
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE chats (id INTEGER, messages TEXT, split TEXT, note TEXT)")
        con.executemany(
            "INSERT INTO chats VALUES (?, ?, ?, ?)",
            [(i, _messages(i), "train" if i < 4 else "test", None) for i in range(6)],
        )
        con.execute("CREATE TABLE pairs (prompt TEXT, chosen TEXT, rejected TEXT)")
        con.executemany(
            "INSERT INTO pairs VALUES (?, ?, ?)",
            [("2+2?", "4", "5"), ("3+3?", None, "7"), ("1+1?", "2", "3")],
        )
        con.execute("CREATE TABLE prompts (prompt TEXT, answer TEXT)")
        con.execute("INSERT INTO prompts VALUES ('1+1?', '2')")
    con.close()
    return path


def test_a_table_is_records_by_column_name(db: Path) -> None:
    chats = tk.data.load_sql(db, Conversation, table="chats")
    assert [c.messages[1].content for c in chats] == [f"w{i}x" for i in range(6)]
    assert chats[0].model_extra == {"id": 0, "split": "train"}  # NULL is missing, not None


def test_a_query_and_the_url_form(db: Path) -> None:
    query = "SELECT messages FROM chats WHERE split = 'test'"
    chats = tk.data.load_sql(db, Conversation, query=query)
    assert [c.messages[1].content for c in chats] == ["w4x", "w5x"]
    url = f"sqlite:///{db}?query={quote(query)}"  # an absolute path: four slashes
    assert url.startswith("sqlite:////")
    assert len(tk.data.load_chat_jsonl(url)) == 2


def test_a_bad_row_names_the_database_table_and_row(db: Path) -> None:
    with pytest.raises(DataError) as caught:
        tk.data.load_sql(db, PreferencePair, table="pairs")
    assert str(caught.value) == f"{db} (table pairs), row 2: field 'chosen': is missing"
    assert (caught.value.line, caught.value.unit) == (2, "row")
    with pytest.raises(DataError) as collected:
        tk.data.load_preference_pairs(f"sqlite:///{db}?table=pairs", errors="collect")
    assert collected.value.problems == [(2, "chosen", "is missing")]


def test_what_is_missing_is_named(db: Path, tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"\(table chat\): no such table \(tables: chats, pairs, prompts\)"
    ):
        tk.data.load_sql(db, Conversation, table="chat")
    with pytest.raises(DataError, match=r"say which table to read: \?table=NAME \(tables: chats"):
        tk.data.load_chat_jsonl(f"sqlite:///{db}")
    with pytest.raises(DataError, match=r"\(query 'SELECT nope FROM chats'\): cannot be read"):
        tk.data.load_sql(db, Conversation, query="SELECT nope FROM chats")
    missing = tmp_path / "typo.db"
    with pytest.raises(DataError, match=r"typo\.db: no such database file"):
        tk.data.load_sql(missing, Conversation, table="chats")
    assert not missing.exists()  # read-only: never creates a database
    with pytest.raises(DataError, match="unknown option 'tabel'"):
        tk.data.load_chat_jsonl(f"sqlite:///{db}?tabel=chats")


def test_a_relative_url_and_every_loop_source(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    assert len(sft_data.load("sqlite:///pipeline.db?table=chats")) == 6
    pairs = preference_data.load_pairs(
        "sqlite:///pipeline.db?query=" + quote("SELECT * FROM pairs WHERE chosen IS NOT NULL")
    )
    assert [p.chosen for p in pairs] == ["4", "2"]
    prompts = rl_sampling.load("sqlite:///pipeline.db?table=prompts")
    assert (prompts[0].prompt, prompts[0].fields) == ("1+1?", {"answer": "2"})


def test_the_cli_trains_on_a_table(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(db.parent)
    args = ["sft", "--data", "sqlite:///pipeline.db?table=chats", "--backend", "mock"]
    args += ["--epochs", "1", "--batch-size", "3", "--rank", "4", "--log-dir", "run"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "done: 2 steps" in result.output
