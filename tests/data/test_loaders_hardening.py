"""Loader inputs an adversary would try: deep JSON, huge CSV cells, lone surrogates,
paths that are not readable files; prompts for ``sample_text`` checked the same way."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tinkerkit.data import load_chat_jsonl, load_rl_prompts
from tinkerkit.data.loaders import check_data_file, surrogate_field
from tinkerkit.data.messages import load_messages, validate_messages
from tinkerkit.errors import DataError

DEEP = "[" * 50_000 + "]" * 50_000
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("a.jsonl", json.dumps(CHAT) + '\n{"messages": ' + DEEP + "}\n", "a.jsonl:2"),
        ("a.json", "[" + json.dumps(CHAT) + ', {"messages": ' + DEEP + "}]", "a.json:1"),
        ("a.json", '{"messages": ' + DEEP + "}", "a.json:1"),
        ("a.csv", f'messages\n"{DEEP}"\n', "a.csv:2: column 'messages'"),
    ],
)
def test_json_nested_too_deeply_is_a_data_error(
    name: str, text: str, where: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as info:
        load_chat_jsonl(path)
    assert str(info.value).startswith(f"{tmp_path}/{where}")
    assert "nested too deeply" in str(info.value)


def test_csv_cells_over_128_kib_load(tmp_path: Path) -> None:
    content = "x" * (300 * 1024)
    chat = [{"role": "user", "content": content}, {"role": "assistant", "content": "ok"}]
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["messages"], [json.dumps(chat)]])
    limit = csv.field_size_limit()
    [record] = load_chat_jsonl(path)
    assert record.messages[0].content == content
    assert csv.field_size_limit() == limit  # the process-wide limit is left as it was


def test_lone_surrogates_name_the_field_and_pairs_load(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    good = '{"prompt": "smile \\ud83d\\ude00"}'
    path.write_text(good + '\n{"prompt": "ok", "answer": ["a", "\\udc80"]}\n')
    with pytest.raises(DataError) as info:
        load_rl_prompts(path)
    assert str(info.value).startswith(f"{path}:2: field 'answer[1]': contains a lone surrogate")
    path.write_text(good + "\n")
    assert load_rl_prompts(path)[0].prompt == "smile \U0001f600"


def test_surrogate_field_walks_without_recursion() -> None:
    deep: object = "\udfff"
    for _ in range(5000):
        deep = [deep]
    assert surrogate_field({"a": "fine", "b": deep}) == "b" + "[0]" * 5000
    assert surrogate_field({"a": ["fine", 1, None]}) is None


def test_paths_that_are_not_readable_data_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jsonl")
    cases = {
        tmp_path: "is a folder, not a data file: give a .jsonl, .json or .csv file",
        tmp_path / "pipe.jsonl": "is not a regular file: give a .jsonl, .json or .csv file",
        tmp_path / "none.jsonl": "no such file",
    }
    for path, message in cases.items():
        with pytest.raises(DataError) as info:
            check_data_file(path)
        assert str(info.value) == f"{path}: {message}"
    with pytest.raises(DataError, match="is not a regular file"):
        load_chat_jsonl(tmp_path / "pipe.jsonl")  # refused, never opened (would block)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"role": "user", "content": "hi"}, "prompt: is a JSON object, not a list"),
        ("hi", "prompt: is a JSON string, not a list"),
        ([], "prompt: is an empty list"),
        (["hi"], "prompt: field '[0]': Input should be a valid dictionary"),
        ([{"role": "bot", "content": "x"}], "prompt: field '[0].role': unknown role 'bot'"),
        ([{"role": "user"}], "prompt: field '[0].content': is missing"),
        ([{"role": "user", "content": 1}], "prompt: field '[0].content': Input should be"),
        ([{"role": "user", "content": "\ud800"}], "prompt: field '[0].content': contains a lone"),
    ],
)
def test_bad_messages_name_the_field(obj: object, message: str) -> None:
    with pytest.raises(DataError) as info:
        validate_messages(obj, "prompt")
    assert str(info.value).startswith(message)


def test_load_messages_reads_a_list_or_a_chat_record(tmp_path: Path) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    (tmp_path / "a.json").write_text(json.dumps(messages))
    (tmp_path / "b.txt").write_text(json.dumps({"messages": messages}))
    assert load_messages(tmp_path / "a.json") == messages
    assert load_messages(tmp_path / "b.txt") == messages
    (tmp_path / "c.json").write_text('[{"role": "user",\n "content": }]')
    with pytest.raises(DataError) as info:
        load_messages(tmp_path / "c.json")
    assert str(info.value) == f"{tmp_path / 'c.json'}:2: is not valid JSON (Expecting value)"


class _NoTokenizer:
    """A sampling client that cannot fetch its tokenizer (the SDK against ``serve``
    with the hub offline)."""

    def __init__(self, sampler: object) -> None:
        self.sampler = sampler

    def get_tokenizer(self) -> object:
        raise OSError("cannot reach the Hugging Face hub")

    def sample(self, *args: object, **kwargs: object) -> object:
        return self.sampler.sample(*args, **kwargs)  # type: ignore[attr-defined]


def test_sample_text_takes_a_tokenizer(tk_service: object) -> None:
    import tinkerkit as tk

    sampler = tk_service.create_sampling_client(base_model="tinkerkit/tiny").result()  # type: ignore[attr-defined]
    tokenizer = tk.tokenizer_of(sampler)
    expected = tk.sample_text(sampler, "Hi", max_tokens=6, temperature=0.0, seed=1)
    got = tk.sample_text(
        _NoTokenizer(sampler), "Hi", max_tokens=6, temperature=0.0, seed=1, tokenizer=tokenizer
    )
    assert got == expected
    assert got[0].tokens
    with pytest.raises(OSError, match="hub"):
        tk.sample_text(_NoTokenizer(sampler), "Hi", max_tokens=6)
    with pytest.raises(DataError, match=r"prompt: field '\[0\]\.role': unknown role 'bot'"):
        tk.sample_text(sampler, [{"role": "bot", "content": "x"}], tokenizer=tokenizer)
