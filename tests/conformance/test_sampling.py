"""Sampling semantics: determinism, logprobs, limits and stops."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types


@pytest.fixture
def sampler(training):
    return training.save_weights_and_get_sampling_client().result()


def _prompt(tokenizer, text="Once upon a time"):
    return types.ModelInput.from_ints(tokenizer.encode(text, add_special_tokens=False))


def test_greedy_sampling_is_deterministic_and_has_logprobs(sampler, tokenizer):
    params = types.SamplingParams(max_tokens=12, temperature=0.0, stop=[])
    a = sampler.sample(_prompt(tokenizer), 2, params).result()
    b = sampler.sample(_prompt(tokenizer), 1, params).result()
    seqs = [*a.sequences, *b.sequences]
    assert all(s.tokens == seqs[0].tokens for s in seqs)
    for s in seqs:
        assert len(s.tokens) == 12 and s.stop_reason == "length"
        assert s.logprobs is not None and len(s.logprobs) == len(s.tokens)
        assert all(lp <= 0 for lp in s.logprobs)


def test_sampled_logprobs_match_compute_logprobs(sampler, tokenizer, target):
    prompt = _prompt(tokenizer)
    out = sampler.sample(
        prompt, 1, types.SamplingParams(max_tokens=8, temperature=1.0, seed=1, stop=[])
    ).result()
    seq = out.sequences[0]
    full = types.ModelInput.from_ints(prompt.to_ints() + seq.tokens)
    scored = sampler.compute_logprobs(full).result()
    np.testing.assert_allclose(
        scored[-len(seq.tokens) :], seq.logprobs, atol=target.logprob_tolerance
    )


def test_seeded_sampling_reproduces(sampler, tokenizer):
    params = types.SamplingParams(max_tokens=10, temperature=1.0, seed=123, stop=[])
    a = sampler.sample(_prompt(tokenizer), 3, params).result()
    b = sampler.sample(_prompt(tokenizer), 3, params).result()
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]


def test_stop_token_ends_generation(sampler, tokenizer):
    greedy = types.SamplingParams(max_tokens=6, temperature=0.0, stop=[])
    first = sampler.sample(_prompt(tokenizer), 1, greedy).result().sequences[0].tokens
    stop_at = first[2]
    params = types.SamplingParams(max_tokens=6, temperature=0.0, stop=[stop_at])
    seq = sampler.sample(_prompt(tokenizer), 1, params).result().sequences[0]
    assert seq.stop_reason == "stop"
    assert seq.tokens == first[: first.index(stop_at) + 1]


def test_prompt_logprobs(sampler, tokenizer):
    prompt = _prompt(tokenizer)
    out = sampler.sample(
        prompt, 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True
    ).result()
    assert out.prompt_logprobs is not None and len(out.prompt_logprobs) == prompt.length
    assert out.prompt_logprobs[0] is None
    np.testing.assert_allclose(
        out.prompt_logprobs[1:], sampler.compute_logprobs(prompt).result()[1:], atol=1e-5
    )


def test_base_model_sampling_client(service, target, tokenizer):
    base = service.create_sampling_client(base_model=target.model).result()
    assert base.get_base_model() == target.model
    out = base.sample(
        _prompt(tokenizer), 1, types.SamplingParams(max_tokens=4, temperature=0.0, stop=[])
    ).result()
    assert len(out.sequences[0].tokens) == 4
