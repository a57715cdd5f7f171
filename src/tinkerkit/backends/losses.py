"""The service's built-in losses, as functions of per-token target logprobs.

Each returns the per-token loss and its gradient with respect to the logprobs; the
engine turns the latter into weight gradients. Sum semantics, as on the service:
the loss of a batch is the sum over datums and tokens (no averaging).

| loss                  | ``loss_fn_inputs``                       | per-token loss                                   |
|-----------------------|------------------------------------------|--------------------------------------------------|
| ``cross_entropy``     | target_tokens, weights                   | ``-w * lp``                                      |
| ``importance_sampling`` | target_tokens, logprobs, advantages    | ``-exp(lp - q) * A``                             |
| ``ppo``               | target_tokens, logprobs, advantages      | ``-min(r * A, clip(r, lo, hi) * A)``             |
| ``cispo``             | target_tokens, logprobs, advantages      | ``-sg(clip(r, lo, hi)) * lp * A``                |
| ``dro``               | target_tokens, logprobs, advantages      | ``-(lp * A - beta/2 * (lp - q)^2)``              |

``q`` is the sampling logprob, ``r = exp(lp - q)``. ``ppo``/``cispo`` take
``loss_fn_config`` keys ``clip_low_threshold`` (default 0.8) and
``clip_high_threshold`` (1.2); ``dro`` takes ``beta`` (0.05).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tinkerkit.errors import RequestError, UnknownLossError


@dataclass(frozen=True)
class LossSpec:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    config_keys: tuple[str, ...]
    fn: Callable[
        [np.ndarray, dict[str, np.ndarray], Mapping[str, float]], tuple[np.ndarray, np.ndarray]
    ]


def _cross_entropy(lp, inputs, config):
    w = inputs["weights"]
    return -w * lp, -w


def _ratio(lp, inputs):
    return np.exp(lp - inputs["logprobs"])


def _importance_sampling(lp, inputs, config):
    a = inputs["advantages"]
    r = _ratio(lp, inputs)
    return -r * a, -r * a


def _clip_bounds(config):
    return float(config.get("clip_low_threshold", 0.8)), float(
        config.get("clip_high_threshold", 1.2)
    )


def _ppo(lp, inputs, config):
    a = inputs["advantages"]
    r = _ratio(lp, inputs)
    low, high = _clip_bounds(config)
    clipped = np.clip(r, low, high)
    unclipped_obj = r * a
    clipped_obj = clipped * a
    use_unclipped = unclipped_obj <= clipped_obj
    loss = -np.minimum(unclipped_obj, clipped_obj)
    # The clipped branch has no gradient where the ratio is clipped.
    in_range = (r >= low) & (r <= high)
    grad = np.where(use_unclipped | in_range, -r * a, 0.0)
    return loss, grad


def _cispo(lp, inputs, config):
    a = inputs["advantages"]
    low, high = _clip_bounds(config)
    coeff = np.clip(_ratio(lp, inputs), low, high)
    return -coeff * lp * a, -coeff * a


def _dro(lp, inputs, config):
    a = inputs["advantages"]
    beta = float(config.get("beta", 0.05))
    diff = lp - inputs["logprobs"]
    return -(lp * a - 0.5 * beta * diff * diff), -(a - beta * diff)


_RL_INPUTS = ("target_tokens", "logprobs", "advantages")

BUILTIN_LOSSES: dict[str, LossSpec] = {
    "cross_entropy": LossSpec(("target_tokens",), ("weights",), (), _cross_entropy),
    "importance_sampling": LossSpec(_RL_INPUTS, (), (), _importance_sampling),
    "ppo": LossSpec(_RL_INPUTS, (), ("clip_low_threshold", "clip_high_threshold"), _ppo),
    "cispo": LossSpec(_RL_INPUTS, (), ("clip_low_threshold", "clip_high_threshold"), _cispo),
    "dro": LossSpec(_RL_INPUTS, (), ("beta",), _dro),
}


def get_loss(name: str) -> LossSpec:
    """The spec of a built-in loss; ``UnknownLossError`` naming the built-ins otherwise."""
    spec = BUILTIN_LOSSES.get(name)
    if spec is None:
        raise UnknownLossError(name, BUILTIN_LOSSES)
    return spec


def check_config(name: str, config: Mapping[str, float | str] | None) -> dict[str, float]:
    """Validate ``loss_fn_config`` for ``name``; unknown keys are an error, not ignored."""
    spec = get_loss(name)
    out: dict[str, float] = {}
    for key, value in (config or {}).items():
        if key not in spec.config_keys:
            allowed = ", ".join(spec.config_keys) or "none"
            raise RequestError(
                f"loss_fn_config key {key!r} is not used by {name!r} (accepted: {allowed})."
            )
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise RequestError(
                f"loss_fn_config[{key!r}] must be a number, got {value!r}."
            ) from None
    return out


def apply(
    name: str, logprobs: np.ndarray, inputs: dict[str, np.ndarray], config: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token loss and d(loss)/d(logprobs) for one datum (float64 arrays)."""
    spec = get_loss(name)
    lp = logprobs.astype(np.float64)
    loss, grad = spec.fn(lp, inputs, config)
    return np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)
