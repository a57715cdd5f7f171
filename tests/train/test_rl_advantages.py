"""RL arithmetic against hand-computed values: advantages, datums, alignment, KL, rewards."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from tinker import types

import tinkerkit as tk
from tinkerkit.train.rl_batch import (
    LOSSES,
    build_batch,
    group_advantages,
    kl_penalty,
    logprob_input,
    rl_loss,
    sample_datum,
    signal_samples,
)
from tinkerkit.train.rl_rewards import RewardCall, RewardOutcome, apply_rewards, score_all
from tinkerkit.train.rl_sampling import Sample, sample_groups, sampling_seed


def _inputs(datum, key):
    return datum.loss_fn_inputs[key].tolist()


def _sample(reward, tokens=(5, 6), logprobs=(-1.0, -2.0), index=0):
    return Sample(index, [1, 2, 3], list(tokens), list(logprobs), "text", reward=reward)


# --- advantages -----------------------------------------------------------------------


def test_advantages_are_centred_on_the_group_mean():
    assert group_advantages([1.0, 0.0, 0.0, 0.0]) == [0.75, -0.25, -0.25, -0.25]
    assert group_advantages([2.0, 4.0]) == [-1.0, 1.0]


def test_std_scaling_divides_by_the_population_std():
    # rewards [1, 0, 0, 0]: mean 0.25, std sqrt(0.1875) = 0.4330127
    got = group_advantages([1.0, 0.0, 0.0, 0.0], scale_by_std=True, eps=0.0)
    assert got == pytest.approx(
        [0.75 / 0.4330127, -0.25 / 0.4330127, -0.25 / 0.4330127, -0.25 / 0.4330127]
    )
    assert group_advantages([3.0, 1.0], scale_by_std=True, eps=0.0) == [1.0, -1.0]


def test_groups_without_signal_are_none():
    assert group_advantages([0.5, 0.5, 0.5]) is None
    assert group_advantages([1.0]) is None
    assert group_advantages([]) is None


def test_build_batch_drops_all_equal_groups_entirely():
    signal = [_sample(1.0), _sample(0.0)]
    flat = [_sample(0.3), _sample(0.3)]
    batch = build_batch([signal, flat], loss="importance_sampling")
    assert len(batch.datums) == 2
    assert batch.samples == signal
    assert [_inputs(d, "advantages")[-1] for d in batch.datums] == [0.5, -0.5]
    assert batch.stats["frac_groups_with_signal"] == 0.5
    assert batch.stats["reward_mean"] == pytest.approx(0.4)
    assert batch.stats["reward_std"] == pytest.approx(np.std([1.0, 0.0, 0.3, 0.3]))
    # entropy estimate: mean of -logprob over every sampled token (all 4 samples)
    assert batch.stats["entropy"] == pytest.approx(1.5)
    assert batch.stats["tokens_sampled"] == 8
    assert signal_samples([signal, flat]) == signal


# --- datums -----------------------------------------------------------------------------


def test_importance_sampling_datum_inputs():
    d = sample_datum([10, 11], [12, 13, 14], [-0.1, -0.2, -0.3], 0.5, "importance_sampling")
    assert d.model_input.to_ints() == [10, 11, 12, 13]
    assert _inputs(d, "target_tokens") == [11, 12, 13, 14]
    assert _inputs(d, "logprobs") == pytest.approx([0.0, -0.1, -0.2, -0.3])
    assert _inputs(d, "advantages") == [0.0, 0.5, 0.5, 0.5]
    assert set(d.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"}


def test_ppo_uses_the_same_inputs_and_passes_clip_thresholds():
    ppo = sample_datum([10, 11], [12, 13], [-0.1, -0.2], [0.5, -0.25], "ppo")
    assert _inputs(ppo, "advantages") == [0.0, 0.5, -0.25]
    assert rl_loss("ppo").call(0.7, 1.3) == (
        "ppo",
        {"clip_low_threshold": 0.7, "clip_high_threshold": 1.3},
    )
    assert rl_loss("importance_sampling").call(0.8, 1.2) == ("importance_sampling", None)
    assert rl_loss("reinforce").call(0.8, 1.2) == ("cross_entropy", None)
    assert sorted(LOSSES) == ["importance_sampling", "ppo", "reinforce"]
    with pytest.raises(ValueError, match="loss must be one of importance_sampling, ppo"):
        rl_loss("grpo")


def test_reinforce_datum_weights_are_the_advantage():
    d = sample_datum([10, 11], [12, 13], [-0.1, -0.2], -0.5, "reinforce")
    assert set(d.loss_fn_inputs) == {"target_tokens", "weights"}
    assert _inputs(d, "weights") == [0.0, -0.5, -0.5]
    assert set(logprob_input(d).loss_fn_inputs) == {"target_tokens"}


def test_datum_trains_exactly_the_sampled_tokens_and_logprobs():
    service = tk.connect("mock")
    sampler = service.create_sampling_client(base_model="tinkerkit/tiny").result()
    tok = tk.tokenizer_of(sampler)
    prompt = tk.data.chat_prompt_tokens([{"role": "user", "content": "hi"}], tok)
    [group] = sample_groups(
        sampler, [(0, prompt)], tok, group_size=3, step=1, seed=0, max_tokens=12, temperature=1.0
    )
    for sample in group:
        d = sample_datum(prompt, sample.tokens, sample.logprobs, 1.0, "importance_sampling")
        n = len(sample.tokens)
        assert _inputs(d, "target_tokens")[-n:] == sample.tokens
        assert d.model_input.to_ints()[: len(prompt)] == prompt
        # float32 round trip of the sampler's own numbers, nothing recomputed
        assert _inputs(d, "logprobs")[-n:] == np.float32(sample.logprobs).tolist()
        assert sample.text == tok.decode(sample.tokens, skip_special_tokens=True)


# --- KL ---------------------------------------------------------------------------------


def test_kl_penalty_arithmetic():
    assert kl_penalty([-1.0, -2.0], [-1.5, -1.0], 0.1).tolist() == pytest.approx([0.05, -0.1])
    with pytest.raises(ValueError, match="completion tokens"):
        kl_penalty([-1.0], [-1.0, -2.0], 0.1)


def test_kl_penalty_is_subtracted_per_token_and_logged():
    a = _sample(1.0, logprobs=(-1.0, -2.0))
    b = _sample(0.0, logprobs=(-0.5, -0.5))
    base = {id(a): [-1.5, -1.0], id(b): [-0.5, -1.5]}
    batch = build_batch([[a, b]], loss="importance_sampling", kl_coef=0.1, base_logprobs=base)
    # advantages 0.5 / -0.5; logp_sample - logp_base: a [0.5, -1.0], b [0.0, 1.0]
    assert _inputs(batch.datums[0], "advantages")[-2:] == pytest.approx([0.45, 0.6])
    assert _inputs(batch.datums[1], "advantages")[-2:] == pytest.approx([-0.5, -0.6])
    assert batch.stats["kl"] == pytest.approx((0.5 - 1.0 + 0.0 + 1.0) / 4)


# --- rewards ----------------------------------------------------------------------------


def test_failed_rewards_are_zeroed_or_skipped_and_logged(caplog):
    outcomes = [RewardOutcome(1.0), RewardOutcome(None, "raised ValueError: boom")]
    labels = {7: "prompt #7 'What?'"}
    with caplog.at_level(logging.WARNING, logger="tinkerkit.rl"):
        zeroed = apply_rewards([[_sample(None, index=7), _sample(None, index=7)]], outcomes, labels)
    assert [s.reward for s in zeroed[0]] == [1.0, 0.0]
    assert "prompt #7 'What?'" in caplog.text and "boom" in caplog.text
    skipped = apply_rewards(
        [[_sample(None, index=7), _sample(None, index=7)]], outcomes, labels, on_error="skip"
    )
    assert [s.reward for s in skipped[0]] == [1.0]


def test_score_all_survives_raising_hanging_and_non_numeric_rewards():
    def reward(prompt, completion, **fields):
        if completion == "raise":
            raise RuntimeError("bad")
        if completion == "hang":
            time.sleep(2.0)
        if completion == "text":
            return "nope"
        return len(completion) + fields.get("bonus", 0)

    calls = [RewardCall("p", c, {"bonus": 1}) for c in ("ab", "raise", "hang", "text", "abc")]
    t0 = time.monotonic()
    out = score_all(reward, calls, timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    assert [o.value for o in out] == [3.0, None, None, None, 4.0]
    assert "RuntimeError: bad" in str(out[1].error) and out[2].timed_out
    assert "not a number" in str(out[3].error)


def test_async_and_stateful_rewards_run_concurrently():
    async def slow(prompt, completion, **fields):
        await asyncio.sleep(0.2)
        return 1.0

    t0 = time.monotonic()
    assert [o.value for o in score_all(slow, [RewardCall("p", "c")] * 10)] == [1.0] * 10
    assert time.monotonic() - t0 < 1.0

    class Counter:
        def __init__(self):
            self.calls = 0

        def __call__(self, prompt, completion, **fields):
            self.calls += 1
            return 0.0

    counter = Counter()
    score_all(counter, [RewardCall("p", "c")] * 5)
    assert counter.calls == 5


def test_sampling_seeds_are_stable_and_distinct():
    assert sampling_seed(0, 1, 2) == sampling_seed(0, 1, 2)
    seeds = {sampling_seed(s, step, i) for s in range(3) for step in range(3) for i in range(3)}
    assert len(seeds) == 27
    assert all(0 <= x < 2**31 for x in seeds)
    assert isinstance(types.SamplingParams(seed=sampling_seed(1, 2, 3)).seed, int)
