"""One RL step's samples → rewards applied → a training batch and its statistics.

errors = apply_rewards(groups, outcomes, labels, on_error="zero")
batch = build_batch(groups, loss="importance_sampling")
training.forward_backward(batch.datums, "importance_sampling")
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from tinker import types

from tinkerkit.train.rl_advantages import Loss, group_advantages, kl_penalty, sample_datum
from tinkerkit.train.rl_rewards import RewardOutcome
from tinkerkit.train.rl_sampling import Sample

logger = logging.getLogger("tinkerkit.rl")

OnRewardError = Literal["zero", "skip"]


@dataclass
class Batch:
    """The datums of a step, the samples they came from (aligned), and step statistics."""

    datums: list[types.Datum] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


def apply_rewards(
    groups: Sequence[Sequence[Sample]],
    outcomes: Sequence[RewardOutcome],
    labels: Mapping[int, str],
    *,
    on_error: OnRewardError = "zero",
    step: int = 0,
) -> list[list[Sample]]:
    """Write rewards into the samples; failed ones are logged and zeroed or dropped.

    ``outcomes`` follow the samples in group order; ``labels`` name each prompt index
    for the log line. Returns the groups that remain.

    Example:
        >>> groups = apply_rewards(groups, outcomes, {0: "prompt #0 '2+2?'"}, on_error="skip")
    """
    flat = [s for group in groups for s in group]
    if len(flat) != len(outcomes):
        raise ValueError(f"{len(flat)} samples but {len(outcomes)} reward outcomes")
    for sample, outcome in zip(flat, outcomes, strict=True):
        sample.reward = outcome.value
        if outcome.error is not None:
            action = "scored 0" if on_error == "zero" else "skipped"
            logger.warning(
                "step %d: reward for %s %s; sample %s",
                step,
                labels.get(sample.prompt_index, f"prompt #{sample.prompt_index}"),
                outcome.error,
                action,
            )
            if on_error == "zero":
                sample.reward = 0.0
    return [[s for s in group if s.reward is not None] for group in groups]


def build_batch(
    groups: Sequence[Sequence[Sample]],
    *,
    loss: Loss,
    scale_by_std: bool = False,
    kl_coef: float = 0.0,
    base_logprobs: Mapping[int, Sequence[float]] | None = None,
) -> Batch:
    """Advantages per group; datums for the groups with signal; reward/entropy statistics.

    ``base_logprobs`` maps ``id(sample)`` to its completion's base-model logprobs; with
    ``kl_coef > 0`` the per-token penalty is subtracted from each advantage.

    Example:
        >>> batch = build_batch(groups, loss="ppo")
        >>> batch.stats["frac_groups_with_signal"]
        0.5
    """
    batch = Batch()
    rewards = [s.reward for group in groups for s in group if s.reward is not None]
    sampled = [s for group in groups for s in group]
    tokens = sum(len(s.tokens) for s in sampled)
    with_signal = 0
    kls: list[float] = []
    for group in groups:
        advantages = group_advantages(
            [float(s.reward or 0.0) for s in group], scale_by_std=scale_by_std
        )
        if advantages is None:
            continue  # all rewards equal: every advantage is 0, nothing to learn here
        with_signal += 1
        for sample, advantage in zip(group, advantages, strict=True):
            if not sample.tokens:
                continue
            per_token: float | list[float] = advantage
            if kl_coef and base_logprobs is not None:
                penalty = kl_penalty(sample.logprobs, base_logprobs[id(sample)], kl_coef)
                kls.extend((penalty / kl_coef).tolist())
                per_token = (advantage - penalty).tolist()
            batch.datums.append(
                sample_datum(sample.prompt_tokens, sample.tokens, sample.logprobs, per_token, loss)
            )
            batch.samples.append(sample)
    all_logprobs = [lp for s in sampled for lp in s.logprobs]
    batch.stats = {
        "reward_mean": float(np.mean(rewards)) if rewards else 0.0,
        "reward_std": float(np.std(rewards)) if rewards else 0.0,
        "frac_groups_with_signal": with_signal / len(groups) if groups else 0.0,
        "entropy": -float(np.mean(all_logprobs)) if all_logprobs else 0.0,
        "tokens_sampled": float(tokens),
        "samples_trained": float(len(batch.datums)),
    }
    if kls:
        batch.stats["kl"] = float(np.mean(kls))
    return batch


def signal_samples(groups: Sequence[Sequence[Sample]]) -> list[Sample]:
    """The samples of groups whose rewards differ (the only ones that get trained)."""
    return [
        s
        for group in groups
        if group_advantages([float(x.reward or 0.0) for x in group]) is not None
        for s in group
        if s.tokens
    ]


def logprob_mismatch(samples: Sequence[Sample], outputs: Sequence[Any]) -> dict[str, float]:
    """max/mean |sampler − trainer| logprob over the completion tokens of ``samples``.

    ``outputs`` are ``forward(...).loss_fn_outputs`` for the same samples' datums.
    """
    diffs: list[np.ndarray] = []
    for sample, output in zip(samples, outputs, strict=True):
        trainer = np.asarray(output["logprobs"].tolist(), dtype=np.float64)
        trainer = trainer[len(trainer) - len(sample.tokens) :]
        diffs.append(np.abs(trainer - np.asarray(sample.logprobs, dtype=np.float64)))
    if not diffs:
        return {}
    joined = np.concatenate(diffs)
    return {"logprob_diff_max": float(joined.max()), "logprob_diff_mean": float(joined.mean())}
