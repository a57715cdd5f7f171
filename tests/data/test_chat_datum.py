from __future__ import annotations

import pytest

from tinkerkit.data import chat_datum, shifted_datum
from tinkerkit.data.chat import ChatFormatError
from tinkerkit.models.tokenizer import IM_END, byte_tokenizer

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]


def _trained_text(datum, tok):
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    weights = datum.loss_fn_inputs["weights"].tolist()
    return tok.decode([t for t, w in zip(targets, weights, strict=True) if w > 0])


def test_train_on_last_turn_only():
    tok = byte_tokenizer()
    datum = chat_datum(CHAT, tok, train_on="last")
    assert _trained_text(datum, tok) == f"Rome.{IM_END}"
    assert datum.model_input.length == len(datum.loss_fn_inputs["target_tokens"].tolist())


def test_train_on_all_assistant_turns():
    tok = byte_tokenizer()
    assert (
        _trained_text(chat_datum(CHAT, tok, train_on="all_assistant"), tok)
        == f"Paris.{IM_END}Rome.{IM_END}"
    )


def test_shift_is_exact():
    datum = shifted_datum([1, 2, 3, 4], [0, 0, 1, 1])
    assert datum.model_input.to_ints() == [1, 2, 3]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == [2, 3, 4]
    assert datum.loss_fn_inputs["weights"].tolist() == [0.0, 1.0, 1.0]


def test_no_assistant_turn_is_an_error():
    with pytest.raises(ChatFormatError, match="assistant"):
        chat_datum(CHAT[:2], byte_tokenizer())


def test_over_max_length_is_an_error_not_a_silent_cut():
    with pytest.raises(ChatFormatError, match="max_length=10"):
        chat_datum(CHAT, byte_tokenizer(), max_length=10)
