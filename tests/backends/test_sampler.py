from __future__ import annotations

import numpy as np
from tinker import types

from tinkerkit.backends.sampler import draw, job, stop_rule


class FixedDecoder:
    """Always the same next-token distribution; records what it was fed."""

    def __init__(self, logits, n):
        self.logits = np.repeat(np.asarray(logits, dtype=np.float64)[None], n, axis=0)
        self.fed = []

    def step(self, tokens):
        self.fed.append(list(tokens))


def _run(
    params, logits=(0.0, 1.0, 2.0, 3.0), n=200, decode=lambda t: "".join("abcd"[i] for i in t)
):
    rules = job([0], n, params, max_context=100, default_stop_tokens=[3], decode=decode)
    return draw(lambda p, k: FixedDecoder(logits, k), rules)


def test_top_k_one_is_greedy():
    seqs = _run(types.SamplingParams(max_tokens=3, temperature=1.0, top_k=1, seed=0, stop=[]))
    assert all(s.tokens == [3, 3, 3] for s in seqs)


def test_top_p_keeps_the_nucleus():
    # probs ~ [.03, .09, .24, .64]: top_p=0.7 keeps tokens 3 and 2 only
    seqs = _run(types.SamplingParams(max_tokens=5, temperature=1.0, top_p=0.7, seed=0, stop=[]))
    drawn = {t for s in seqs for t in s.tokens}
    assert drawn == {2, 3}


def test_temperature_distribution():
    seqs = _run(types.SamplingParams(max_tokens=10, temperature=1.0, seed=1, stop=[]), n=400)
    counts = np.bincount([t for s in seqs for t in s.tokens], minlength=4) / 4000
    probs = np.exp([0, 1, 2, 3]) / np.exp([0, 1, 2, 3]).sum()
    np.testing.assert_allclose(counts, probs, atol=0.03)


def test_default_stop_and_string_stop():
    seqs = _run(types.SamplingParams(max_tokens=5, temperature=0.0), n=1)
    assert seqs[0].tokens == [3] and seqs[0].stop_reason == "stop"
    # A stop string adds to EOS (token 3): EOS still ends the generation...
    seqs = _run(types.SamplingParams(max_tokens=5, temperature=0.0, stop="dd"), n=1)
    assert seqs[0].tokens == [3] and seqs[0].stop_reason == "stop"
    # ...and the string stops one that never draws EOS (greedy: token 2, "c").
    greedy_c = (0.0, 1.0, 3.0, 2.0)
    seqs = _run(types.SamplingParams(max_tokens=5, temperature=0.0, stop="cc"), greedy_c, n=1)
    assert seqs[0].tokens == [2, 2] and seqs[0].stop_reason == "stop"


def test_stop_rule_adds_to_eos_unless_empty():
    assert stop_rule(None, [3, 4]) == ({3, 4}, [])
    assert stop_rule([], [3, 4]) == (set(), [])
    assert stop_rule("x", [3]) == ({3}, ["x"])
    assert stop_rule(["\n\nUser:", "y"], [3]) == ({3}, ["\n\nUser:", "y"])
    assert stop_rule([7, 8], [3]) == ({3, 7, 8}, [])
    seqs = _run(types.SamplingParams(max_tokens=5, temperature=0.0, stop=[]), n=1)
    assert seqs[0].tokens == [3] * 5 and seqs[0].stop_reason == "length"


def test_logprobs_are_model_logprobs_not_tempered():
    seqs = _run(types.SamplingParams(max_tokens=1, temperature=0.0, stop=[]), n=1)
    expected = 3 - np.log(np.exp([0, 1, 2, 3]).sum())
    assert seqs[0].logprobs[0] == np.float32(expected)
