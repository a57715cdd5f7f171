from __future__ import annotations

import numpy as np
import pytest

from tinkerkit.data import (
    PreferencePair,
    chat_datum,
    check_datums,
    completion_datum,
    preference_datums,
    rl_datum,
    shifted_datum,
    show_datum,
)
from tinkerkit.errors import DatumCheckError
from tinkerkit.models.tokenizer import byte_tokenizer


def test_completion_datum_trains_on_completion_only():
    tok = byte_tokenizer()
    d = completion_datum("Q: hi\nA:", " yo", tok)
    targets = d.loss_fn_inputs["target_tokens"].tolist()
    weights = d.loss_fn_inputs["weights"].tolist()
    assert tok.decode([t for t, w in zip(targets, weights, strict=True) if w]) == " yo"


def test_preference_pair_shares_prompt_tokens():
    tok = byte_tokenizer()
    chosen, rejected = preference_datums(
        PreferencePair(prompt="2+2?", chosen="4", rejected="five"), tok
    )
    c, r = chosen.model_input.to_ints(), rejected.model_input.to_ints()
    first_trained = chosen.loss_fn_inputs["weights"].tolist().index(1.0)
    assert c[: first_trained + 1] == r[: first_trained + 1]
    assert rejected.loss_fn_inputs["weights"].tolist().index(1.0) == first_trained


def test_rl_datum_aligns_logprobs_and_advantages():
    d = rl_datum([1, 2, 3], [4, 5], [-0.5, -0.25], advantage=2.0)
    assert d.model_input.to_ints() == [1, 2, 3, 4]
    assert d.loss_fn_inputs["target_tokens"].tolist() == [2, 3, 4, 5]
    np.testing.assert_array_equal(d.loss_fn_inputs["logprobs"].to_numpy(), [0, 0, -0.5, -0.25])
    np.testing.assert_array_equal(d.loss_fn_inputs["advantages"].to_numpy(), [0, 0, 2, 2])
    with pytest.raises(ValueError, match="2 completion tokens but 1"):
        rl_datum([1], [4, 5], [-0.5], advantage=1.0)


def test_check_datums_names_every_bad_index():
    tok = byte_tokenizer()
    good = chat_datum(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tok
    )
    zero = shifted_datum([1, 2, 3], [0, 0, 0])
    oov = shifted_datum([1, 2, 5000], [0, 1, 1])
    long = shifted_datum(list(range(100)), [1] * 100)
    with pytest.raises(DatumCheckError) as info:
        check_datums([good, zero, oov, long], vocab_size=len(tok), max_length=50)
    assert [i for i, _ in info.value.problems] == [1, 2, 3]
    text = str(info.value)
    assert "trains on nothing" in text and "5000" in text and "context" in text
    check_datums([good], vocab_size=len(tok))


def test_show_datum_marks_trained_tokens():
    tok = byte_tokenizer()
    d = chat_datum([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tok)
    shown = show_datum(d, tok, color=False)
    assert "⟦yo<|im_end|>⟧" in shown and "[24 targets, 3 trained]" in shown
    assert "\x1b[42;30myo" in show_datum(d, tok, color=True)
