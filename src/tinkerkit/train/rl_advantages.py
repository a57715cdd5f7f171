"""Rewards → advantages → datums, on exactly the tokens the sampler produced.

- ``group_advantages``: reward minus the group's mean (optionally divided by its std).
  A group whose rewards are all equal has no signal — every advantage would be 0 — so it
  returns ``None`` and the loop leaves those samples out of the batch entirely.
- ``kl_penalty``: per-token ``kl_coef * (logp_sample - logp_base)``, subtracted from the
  advantage, which pulls the policy back towards the base model where it drifted.
- ``sample_datum``: the datum for a loss. ``importance_sampling``/``ppo`` get
  ``target_tokens``, the sampler's ``logprobs`` and per-token ``advantages``
  (``tinkerkit.data.rl_datum``); ``reinforce`` is the guide's REINFORCE — ``cross_entropy``
  with ``weights`` = advantage on the completion tokens.

    advantages = group_advantages([1.0, 0.0, 0.5, 0.5])   # [0.5, -0.5, 0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from tinker import types

from tinkerkit.data.builders import rl_datum

Loss = Literal["importance_sampling", "ppo", "reinforce"]
LOSSES: tuple[str, ...] = ("importance_sampling", "ppo", "reinforce")


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
    datum = rl_datum(prompt_tokens, completion_tokens, sampling_logprobs, advantage)
    if loss in ("importance_sampling", "ppo"):
        return datum
    if loss == "reinforce":
        inputs = datum.loss_fn_inputs
        return types.Datum(
            model_input=datum.model_input,
            loss_fn_inputs={
                "target_tokens": inputs["target_tokens"],
                "weights": inputs["advantages"],
            },
        )
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def loss_call(loss: Loss, clip_low: float, clip_high: float) -> tuple[str, dict[str, float] | None]:
    """``(loss_fn, loss_fn_config)`` for ``forward_backward``.

    Example:
        >>> loss_call("ppo", 0.8, 1.2)
        ('ppo', {'clip_low_threshold': 0.8, 'clip_high_threshold': 1.2})
    """
    if loss == "ppo":
        return "ppo", {"clip_low_threshold": clip_low, "clip_high_threshold": clip_high}
    if loss == "importance_sampling":
        return "importance_sampling", None
    if loss == "reinforce":
        return "cross_entropy", None
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")


def logprob_input(datum: types.Datum) -> types.Datum:
    """The datum stripped to what ``forward(..., "cross_entropy")`` reads (for recomputing)."""
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": datum.loss_fn_inputs["target_tokens"]},
    )
