from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from tinker import types

import tinkerkit as tk
from tinkerkit.backends import prompt_scoring
from tinkerkit.backends.prompt_scoring import check_prompt_requests, score_prompt
from tinkerkit.backends.sampler import log_softmax
from tinkerkit.errors import InvalidPromptError

VOCAB = 6
TABLE = np.random.default_rng(0).normal(size=(VOCAB, VOCAB)) * 2
PROMPT = [1, 4, 2, 5, 0]


class BigramDecoder:
    """Next-token logits are TABLE[last token fed]; records the prefix it started from."""

    started: ClassVar[list[list[int]]] = []

    def __init__(self, prompt, n):
        BigramDecoder.started.append(list(prompt))
        self.logits = np.repeat(TABLE[prompt[-1]][None], n, axis=0)

    def step(self, tokens):
        self.logits = TABLE[np.asarray(tokens)]


def _score(params=None, **fields):
    BigramDecoder.started = []
    defaults = dict(
        topk_prompt_logprobs=0,
        target_prompt_logprobs=None,
        prompt_alt_tokens_k=0,
        prompt_logprobs_last_n=None,
    )
    requests = check_prompt_requests(
        PROMPT, VOCAB, params or types.SamplingParams(), **{**defaults, **fields}
    )
    return score_prompt(BigramDecoder, PROMPT, requests)


def _expected(position: int) -> np.ndarray:
    return log_softmax(TABLE[PROMPT[position - 1]][None])[0]


def test_topk_rows_are_the_distribution_after_each_prefix():
    top = _score(topk_prompt_logprobs=3).topk
    assert top is not None and top.token_ids.shape == (len(PROMPT), 3)
    assert top.token_ids[0].tolist() == [0, 0, 0] and top.logprobs[0].tolist() == [-99999.0] * 3
    for p in range(1, len(PROMPT)):
        lp = _expected(p)
        order = np.argsort(-lp, kind="stable")[:3]
        assert top.token_ids[p].tolist() == order.tolist()
        np.testing.assert_allclose(top.logprobs[p], lp[order], rtol=1e-6)
    assert BigramDecoder.started == [PROMPT[:1]]


def test_last_n_starts_the_decoder_late_and_leaves_earlier_rows_unscored():
    top = _score(topk_prompt_logprobs=2, prompt_logprobs_last_n=2).topk
    assert top is not None
    assert np.all(top.logprobs[:3] == -99999.0) and np.all(top.logprobs[3:] > -99999.0)
    assert BigramDecoder.started == [PROMPT[:3]]


def test_targets_start_at_the_first_row_naming_an_id():
    ids = np.full((len(PROMPT) - 1, 2), -1, dtype=np.int64)
    ids[2] = [3, -1]
    ids[3] = [0, 5]
    target = _score(target_prompt_logprobs=types.TensorData.from_numpy(ids)).target
    assert target is not None
    values = target.to_numpy()
    assert values[2, 0] == pytest.approx(_expected(3)[3]) and values[2, 1] == 0.0
    np.testing.assert_allclose(values[3], _expected(4)[[0, 5]], rtol=1e-6)
    assert np.all(values[:2] == 0.0)
    assert BigramDecoder.started == [PROMPT[:3]]


def test_alternatives_are_drawn_at_the_temperature_with_model_logprobs():
    draws = []
    for seed in range(600):
        alt = _score(types.SamplingParams(temperature=0.7, seed=seed), prompt_alt_tokens_k=6)
        assert alt.alt_tokens is not None
        tokens, logprobs = alt.alt_tokens.tokens.to_numpy(), alt.alt_tokens.logprobs.to_numpy()
        for i in range(len(PROMPT) - 1):
            np.testing.assert_allclose(logprobs[i], _expected(i + 1)[tokens[i]], rtol=1e-6)
        draws.append(tokens)
    tokens = np.concatenate(draws, axis=1)  # (len(PROMPT) - 1, 3600)
    for i in range(len(PROMPT) - 1):
        frequencies = np.bincount(tokens[i], minlength=VOCAB) / tokens.shape[1]
        tempered = np.exp(log_softmax(_expected(i + 1)[None] / 0.7)[0])
        np.testing.assert_allclose(frequencies, tempered, atol=0.03)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"topk_prompt_logprobs": -1}, ["topk_prompt_logprobs", "0 or greater"]),
        ({"topk_prompt_logprobs": VOCAB + 1}, ["vocabulary of 6"]),
        ({"prompt_alt_tokens_k": VOCAB + 1}, ["prompt_alt_tokens_k", "at most 6"]),
        (
            {
                "target_prompt_logprobs": types.TensorData(
                    data=[1, 2],
                    dtype="int64",
                    shape=[4, 2],
                    sparse_crow_indices=[0, 1, 3, 2, 2],
                    sparse_col_indices=[0, 1],
                )
            },
            ["not a valid sparse CSR"],
        ),
        (
            {"target_prompt_logprobs": types.TensorData.from_numpy(np.full((4, 1), -2))},
            ["token id -2", "use -1"],
        ),
    ],
)
def test_refusals_say_what_is_wrong(fields, words):
    with pytest.raises(InvalidPromptError) as info:
        _score(**fields)
    for word in words:
        assert word in str(info.value)


def test_the_cost_cap_is_len_prompt_times_k(monkeypatch):
    monkeypatch.setattr(prompt_scoring, "MAX_PROMPT_SCORES", 10)
    assert _score(topk_prompt_logprobs=2).topk is not None  # 5 × 2 = 10
    with pytest.raises(InvalidPromptError, match=r"5 × 3 = 15 scores, over the limit of 10"):
        _score(topk_prompt_logprobs=3)
    with pytest.raises(InvalidPromptError, match="distinct ids"):
        ids = np.array([[0, 1], [2, 3], [0, 0], [1, 1]], dtype=np.int64)
        _score(target_prompt_logprobs=types.TensorData.from_numpy(ids))


def test_prompt_extras_leave_the_sampled_sequences_unchanged():
    service = tk.connect("mock")
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=8).result()
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(list(b"Once upon"))
    params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=11, stop=[])
    plain = sampler.sample(prompt, 3, params).result()
    extras = sampler.sample(
        prompt, 3, params, topk_prompt_logprobs=5, prompt_alt_tokens_k=4, topk_sample_logprobs=2
    ).result()
    assert [s.tokens for s in plain.sequences] == [s.tokens for s in extras.sequences]
