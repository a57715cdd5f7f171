"""One RL step's samples → advantages → the datums of its loss → its update, and statistics.

- ``group_advantages``: reward minus the group's mean (optionally divided by its std).
  A group whose rewards are all equal has no signal — every advantage would be 0 — so it
  returns ``None`` and the loop leaves those samples out of the batch entirely.
- ``kl_penalty``: per-token ``kl_coef * (logp_sample - logp_base)``, subtracted from the
  advantage, which pulls the policy back towards the base model where it drifted.
- ``LOSSES``: the one table of RL objectives, ``name -> (service loss, its config,
  datum)``. ``importance_sampling``/``ppo`` train on ``target_tokens``, the sampler's
  ``logprobs`` and per-token ``advantages`` (``tinkerkit.data.rl_datum``); ``reinforce``
  is the guide's REINFORCE — ``cross_entropy`` with ``weights`` = advantage.
- ``submit_update`` / ``update_metrics``: the batch's ``forward_backward`` + ``optim_step``
  in flight, and the loss (and sampler/trainer drift) read from their results.

    batch = build_batch(groups, loss="importance_sampling")
    training.forward_backward(batch.datums, *LOSSES["importance_sampling"].call(0.8, 1.2))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from tinker import types

from tinkerkit.data.builders import rl_datum
from tinkerkit.protocols import FutureLike, SamplingClientLike, TrainingClientLike
from tinkerkit.train.rl_sampling import Sample, base_logprobs

Loss = Literal["importance_sampling", "ppo", "reinforce"]


def _clip_thresholds(low: float, high: float) -> dict[str, float]:
    return {"clip_low_threshold": low, "clip_high_threshold": high}


def _as_weights(datum: types.Datum) -> types.Datum:
    """REINFORCE as ``cross_entropy``: the advantages become the per-token weights."""
    inputs = datum.loss_fn_inputs
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": inputs["target_tokens"], "weights": inputs["advantages"]},
    )


@dataclass(frozen=True)
class RLLoss:
    """How one RL objective is asked of the service."""

    service_loss: types.LossFnType
    """The ``loss_fn`` of ``forward_backward``."""
    loss_config: Callable[[float, float], dict[str, float] | None]
    """``(clip_low, clip_high) -> loss_fn_config``."""
    datum: Callable[[types.Datum], types.Datum]
    """``rl_datum``'s datum (targets, sampling logprobs, advantages) → this loss's datum."""

    def call(
        self, clip_low: float, clip_high: float
    ) -> tuple[types.LossFnType, dict[str, float] | None]:
        """``(loss_fn, loss_fn_config)`` for ``forward_backward``.

        Example:
            >>> LOSSES["ppo"].call(0.8, 1.2)
            ('ppo', {'clip_low_threshold': 0.8, 'clip_high_threshold': 1.2})
        """
        return self.service_loss, self.loss_config(clip_low, clip_high)


LOSSES: dict[str, RLLoss] = {
    "importance_sampling": RLLoss("importance_sampling", lambda low, high: None, lambda d: d),
    "ppo": RLLoss("ppo", _clip_thresholds, lambda d: d),
    "reinforce": RLLoss("cross_entropy", lambda low, high: None, _as_weights),
}


def rl_loss(loss: str) -> RLLoss:
    """The table's entry for ``loss``; ``ValueError`` naming the choices otherwise."""
    try:
        return LOSSES[loss]
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}") from None


@dataclass
class Batch:
    """The datums of a step, the samples they came from (aligned), and step statistics."""

    datums: list[types.Datum] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


def group_advantages(
    rewards: Sequence[float], *, scale_by_std: bool = False, eps: float = 1e-6
) -> list[float] | None:
    """Group-centred advantages, or ``None`` when the group carries no signal.

    With ``scale_by_std`` the centred rewards are divided by the group's (population)
    standard deviation plus ``eps``.

    Example:
        >>> group_advantages([1.0, 0.0, 0.0, 0.0])
        [0.75, -0.25, -0.25, -0.25]
        >>> group_advantages([0.3, 0.3]) is None
        True
    """
    values = np.asarray(rewards, dtype=np.float64)
    if values.size < 2 or float(values.max() - values.min()) <= 1e-12:
        return None
    centred = values - values.mean()
    if scale_by_std:
        centred = centred / (values.std() + eps)
    return [float(x) for x in centred]


def kl_penalty(
    sampling_logprobs: Sequence[float], base_logprobs: Sequence[float], kl_coef: float
) -> np.ndarray:
    """Per-token ``kl_coef * (logp_sample - logp_base)``: what is subtracted from the advantage.

    ``logp_sample - logp_base`` of a token drawn from the policy is a one-sample estimate
    of KL(policy || base); its mean over tokens is the ``kl`` the loop logs.

    Example:
        >>> kl_penalty([-1.0, -2.0], [-1.5, -1.0], kl_coef=0.1).tolist()
        [0.05, -0.1]
    """
    sample = np.asarray(sampling_logprobs, dtype=np.float64)
    base = np.asarray(base_logprobs, dtype=np.float64)
    if sample.shape != base.shape:
        raise ValueError(
            f"{sample.size} sampling logprobs but {base.size} base logprobs; both must cover "
            "exactly the completion tokens"
        )
    return kl_coef * (sample - base)


def sample_datum(
    prompt_tokens: Sequence[int],
    completion_tokens: Sequence[int],
    sampling_logprobs: Sequence[float],
    advantage: float | Sequence[float],
    loss: Loss,
) -> types.Datum:
    """The datum that trains ``loss`` on one sample (one advantage, or one per token).

    Example:
        >>> d = sample_datum([1, 2], [3, 4], [-0.5, -0.7], 0.25, "importance_sampling")
        >>> d.loss_fn_inputs["target_tokens"].tolist(), d.loss_fn_inputs["advantages"].tolist()
        ([2, 3, 4], [0.0, 0.25, 0.25])
    """
    entry = rl_loss(loss)
    return entry.datum(rl_datum(prompt_tokens, completion_tokens, sampling_logprobs, advantage))


def logprob_input(datum: types.Datum) -> types.Datum:
    """The datum stripped to what ``forward(..., "cross_entropy")`` reads (for recomputing)."""
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": datum.loss_fn_inputs["target_tokens"]},
    )


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


def base_logprobs_by_sample(
    base_sampler: SamplingClientLike | None, groups: Sequence[Sequence[Sample]]
) -> dict[int, list[float]] | None:
    """``build_batch``'s ``base_logprobs``: the base model's completion logprobs of the
    samples that get trained, by ``id(sample)``; None without a base sampler (no KL)."""
    if base_sampler is None:
        return None
    trained = signal_samples(groups)
    return dict(zip((id(s) for s in trained), base_logprobs(base_sampler, trained), strict=True))


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


def submit_update(
    training: TrainingClientLike,
    batch: Batch,
    *,
    loss: Loss,
    learning_rate: float,
    clip_low: float,
    clip_high: float,
    recompute_logprobs: bool,
) -> dict[str, FutureLike[Any]]:
    """``forward_backward`` + ``optim_step`` on the batch, in flight (``update_metrics`` reads
    them). No futures (``{}``) when no group had signal: an empty ``optim_step`` would
    still move the weights through Adam's momentum. ``recompute_logprobs`` adds a
    ``forward`` first. The knobs are ``rl.Config``'s, which holds their defaults.

    Example:
        >>> futures = submit_update(training, batch, loss="ppo", learning_rate=1e-5,
        ...                         clip_low=0.8, clip_high=1.2, recompute_logprobs=False)
        >>> update_metrics(batch, {k: f.result() for k, f in futures.items()})["loss"]
        0.0123
    """
    if not batch.datums:
        return {}
    futures: dict[str, FutureLike[Any]] = {}
    if recompute_logprobs:
        inputs = [logprob_input(d) for d in batch.datums]
        futures["forward"] = training.forward(inputs, "cross_entropy")
    loss_fn, loss_config = rl_loss(loss).call(clip_low, clip_high)
    futures["fb"] = training.forward_backward(batch.datums, loss_fn, loss_config)
    futures["opt"] = training.optim_step(types.AdamParams(learning_rate=learning_rate))
    return futures


def update_metrics(batch: Batch, results: Mapping[str, Any]) -> dict[str, float]:
    """The loss per trained token (and ``logprob_diff_*`` after a recompute) of an update."""
    if not results:
        return {"loss": 0.0}
    loss_sum = float(results["fb"].metrics["loss:sum"])
    trained_tokens = sum(len(s.tokens) for s in batch.samples)
    metrics = {"loss": loss_sum / max(trained_tokens, 1), "loss_sum": loss_sum}
    if "forward" in results:
        metrics.update(logprob_mismatch(batch.samples, results["forward"].loss_fn_outputs))
    return metrics
