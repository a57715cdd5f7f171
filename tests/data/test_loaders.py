"""Every kind of malformed input gives a DataError naming file, line and field."""

from __future__ import annotations

import json

import pytest

from tinkerkit.data import (
    Conversation,
    iter_records,
    load_chat_jsonl,
    load_preference_pairs,
    load_prompt_completions,
    load_rl_prompts,
)
from tinkerkit.errors import DataError

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def _write(path, lines):
    path.write_bytes(
        b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n"
    )
    return path


@pytest.mark.parametrize(
    ("bad_line", "words"),
    [
        ("{not json", ["not valid JSON"]),
        (
            json.dumps({"messages": [{"role": "bot", "content": "x"}]}),
            ["messages[0].role", "unknown role 'bot'"],
        ),
        (json.dumps({"messages": []}), ["'messages'", "empty"]),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}), ["no assistant turn"]),
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": 3},
                        {"role": "assistant", "content": "y"},
                    ]
                }
            ),
            ["messages[0].content", "string"],
        ),
        (json.dumps({"conversation": []}), ["'messages'", "missing"]),
        (json.dumps(["a", "list"]), ["JSON object"]),
        (b'{"messages": "\xff\xfe"}', ["UTF-8"]),
    ],
    ids=[
        "bad-json",
        "unknown-role",
        "empty",
        "no-assistant",
        "mistyped",
        "missing-field",
        "not-object",
        "not-utf8",
    ],
)
def test_each_malformed_line_is_reported_with_its_line_number(tmp_path, bad_line, words):
    path = _write(tmp_path / "chats.jsonl", [json.dumps(GOOD), "", json.dumps(GOOD), bad_line])
    with pytest.raises(DataError) as info:
        load_chat_jsonl(path)
    message = str(info.value)
    assert "chats.jsonl:4" in message, message
    assert info.value.line == 4
    for word in words:
        assert word in message, message


def test_collect_reports_every_bad_line_at_once(tmp_path):
    path = _write(tmp_path / "c.jsonl", ["{", json.dumps(GOOD), json.dumps({"messages": []}), "[]"])
    with pytest.raises(DataError) as info:
        load_chat_jsonl(path, errors="collect")
    assert [p[0] for p in info.value.problems] == [1, 3, 4]
    assert "3 bad records" in str(info.value)


def test_skip_keeps_the_good_records(tmp_path, caplog):
    path = _write(tmp_path / "c.jsonl", ["{", json.dumps(GOOD), json.dumps(GOOD)])
    chats = load_chat_jsonl(path, errors="skip")
    assert len(chats) == 2 and isinstance(chats[0], Conversation)
    assert "skipped 1" in caplog.text


def test_streaming_yields_before_the_end(tmp_path):
    path = _write(tmp_path / "c.jsonl", [json.dumps(GOOD), "{broken"])
    stream = iter_records(path, Conversation)
    assert isinstance(next(stream), Conversation)
    with pytest.raises(DataError, match=":2"):
        next(stream)


def test_json_array_reports_element_lines(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "a"}\n]\n')
    with pytest.raises(DataError) as info:
        load_prompt_completions(path)
    assert info.value.line == 3 and info.value.field == "completion"


def test_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt,chosen,rejected\nWhat?,good,bad\n,x,y\n")
    pairs = load_preference_pairs(path, errors="skip")
    assert len(pairs) == 1 and pairs[0].chosen == "good"


def test_rl_prompts_keep_extra_fields(tmp_path):
    path = _write(tmp_path / "r.jsonl", [json.dumps({"prompt": "2+2?", "answer": "4"})])
    (prompt,) = load_rl_prompts(path)
    assert prompt.fields == {"answer": "4"}


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_chat_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no records"):
        load_chat_jsonl(tmp_path / "empty.jsonl")


def test_in_memory_records_get_the_same_errors(tmp_path):
    import tinkerkit as tk
    from tinkerkit.data.loaders import validate_record

    with pytest.raises(
        DataError, match=r"data\[3\]: field 'messages\[0\].role': unknown role 'bot'"
    ):
        validate_record(Conversation, {"messages": [{"role": "bot", "content": "x"}]}, "data[3]")
    bad_chats = [GOOD, {"messages": []}]
    with pytest.raises(DataError, match=r"data\[1\]: field 'messages': is empty"):
        tk.sft.train(
            tk.sft.Config(data=bad_chats, log_dir=tmp_path / "sft", progress=False),
            service=tk.connect("mock"),
        )
    bad_pairs = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}]
    with pytest.raises(DataError, match=r"data\[1\]: field 'rejected': is missing"):
        tk.preference.train_dpo(
            tk.preference.DPOConfig(data=bad_pairs, log_dir=tmp_path / "dpo", progress=False),
            service=tk.connect("mock"),
        )
    assert not (tmp_path / "sft").exists() and not (tmp_path / "dpo").exists()
