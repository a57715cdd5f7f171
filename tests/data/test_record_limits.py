"""Records over the size bound are refused by size, before parsing or tokenizing (a
200 MB one-line chat once drove the Rust tokenizer to a panic at ~8 GB), with the file,
the line and the limit named; a Hugging Face ``Dataset`` trains end to end."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

import tinkerkit as tk
from tinkerkit.data import limits
from tinkerkit.data.chat import chat_datums
from tinkerkit.errors import ChatFormatError, DataError
from tinkerkit.train import sft_data

LIMIT = f"{limits.MAX_RECORD_BYTES:,} bytes (max_record_bytes)"
LIMIT_RE = re.escape(LIMIT)


def _chat(content: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]
    }


class _CountingTokenizer:
    """A tokenizer that counts every call (to prove none was made)."""

    def __init__(self) -> None:
        self.calls = 0
        self.chat_template = None
        self.eos_token_id = 0

    def __call__(self, text: str, **kw: Any) -> dict[str, list[int]]:
        self.calls += 1
        return {"input_ids": list(text.encode())}

    def apply_chat_template(self, *args: Any, **kw: Any) -> Any:
        self.calls += 1
        raise AssertionError("never reached")

    def __len__(self) -> int:
        return 256


def test_bounded_lines_never_hold_a_long_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "_CHUNK", 3)
    data = b"abcdefgh\nab\n\n" + b"x" * 40 + b"\nxyz"
    assert list(limits.bounded_lines(io.BytesIO(data), 8)) == [
        (1, 8, b"abcdefgh"),
        (2, 2, b"ab"),
        (4, 40, None),
        (5, 3, b"xyz"),
    ]


def test_a_multi_megabyte_line_is_refused_before_any_tokenizer(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    big = json.dumps(_chat("x" * (5 * 2**20)))
    path.write_text(json.dumps(_chat("ok")) + "\n" + big + "\n")
    tokenizer = _CountingTokenizer()
    with pytest.raises(DataError) as caught:
        sft_data.to_datums(sft_data.load(path), tokenizer, "last", None)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"{path}:2: the line is {len(big):,} bytes, over the limit of {LIMIT}; split it, "
        "or raise max_record_bytes (tinkerkit.data.limits.MAX_RECORD_BYTES) if a model "
        "really needs it whole"
    )
    assert tokenizer.calls == 0
    # The limit is a knob: a raised one reads the same line.
    assert len(tk.data.load_chat_jsonl(path, max_record_bytes=6 * 2**20)) == 2


def test_a_large_record_in_memory_or_in_json_is_refused_by_its_text(tmp_path: Path) -> None:
    huge = "y" * (limits.MAX_RECORD_BYTES + 1)
    with pytest.raises(
        DataError, match=rf"^data\[1\]: the record's text is .* over the limit of {LIMIT_RE}"
    ):
        sft_data.load([_chat("ok"), _chat(huge)])
    path = tmp_path / "chats.json"
    path.write_text(json.dumps([_chat("ok"), _chat("z" * 200)], indent=1))
    with pytest.raises(
        DataError,
        match=rf"^{re.escape(str(path))}:14: the record's text is \d+ bytes, over the limit of 100 ",
    ):
        tk.data.load_chat_jsonl(path, max_record_bytes=100)


def test_chat_datums_check_the_size_before_tokenizing() -> None:
    tokenizer = _CountingTokenizer()
    conversation = tk.data.Conversation.model_validate(
        _chat("é" * (limits.MAX_RECORD_BYTES // 2 + 1))
    )
    with pytest.raises(
        ChatFormatError,
        match=rf"^conversation 1's text is [\d,]+ bytes, over the limit of {LIMIT_RE}",
    ):
        chat_datums([_chat("ok")["messages"], conversation], tokenizer)  # type: ignore[arg-type]
    assert tokenizer.calls == 0


def test_a_hugging_face_dataset_trains_end_to_end(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [_chat(f"w{i}x") for i in range(6)]
    dataset = datasets.Dataset.from_list(rows)
    config = tk.sft.Config(
        data=dataset, epochs=1, batch_size=3, rank=4, log_dir=tmp_path / "run", progress=False
    )
    result = tk.sft.train(config, service=tk.connect("mock"))
    assert result.steps == 2 and result.final_loss is not None
