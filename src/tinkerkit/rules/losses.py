"""The service's built-in losses, as functions of per-token target logprobs.

Each returns the per-token loss and its gradient with respect to the logprobs; the
engine turns the latter into weight gradients. Sum semantics, as on the service:
the loss of a batch is the sum over datums and tokens (no averaging). Every loss
multiplies its per-token loss by ``weights`` (default all ones).

=====================  ==========================================================  ===========================================
loss                   ``loss_fn_inputs`` (required; optional)                     per-token loss
=====================  ==========================================================  ===========================================
cross_entropy          target_tokens; weights  — (N,) or (N, K)                    ``-w lp``
importance_sampling    target_tokens, logprobs, advantages; weights                ``-w r A``
ppo                    as importance_sampling; weights, clip_low/high_threshold    ``-w min(r A, clip(r, lo, hi) A)``
cispo                  as ppo                                                      ``-w sg(clip(r, lo, hi)) lp A``
dro                    as importance_sampling                                      ``-w (lp A - beta/2 (lp - q)^2)``
gspo                   as ppo, plus sequence_ratio_mask                            ``-w min(s_t A, clip(s_t, lo, hi) A)``
stable_reinforce       target_tokens, advantages, provenance; weights, logprobs    ``-w sg(min(rho, 2)) A lp + w kl/2 (lp - q*)^2``
                       (ignored)                                                   on sampled tokens, 0 on prompt tokens
=====================  ==========================================================  ===========================================

``lp`` is the learner's logprob of the target, ``q`` the sampling logprob
(``loss_fn_inputs["logprobs"]``), ``r = exp(lp - q)``, ``sg`` stop-gradient.

- ``gspo`` (GSPO-token): ``s_t = sg(s) * exp(lp_t - sg(lp_t))`` with the sequence ratio
  ``s = exp(mean over M of (lp - q))``, ``M`` = positions where ``sequence_ratio_mask != 0``
  (an empty ``M`` is refused).
- ``stable_reinforce``: ``q*`` is the logprob the sampler recorded for each sampled token
  (``record_stability_info=True``, found through the datum's provenance spans), ``rho =
  exp(sg(lp) - q*)`` truncated at 2; prompt positions contribute nothing and must have
  advantage 0.

Config (``loss_fn_config``; numbers, or strings that parse as numbers):

| loss | keys and defaults |
|---|---|
| ``ppo`` | ``clip_low_threshold`` 0.8, ``clip_high_threshold`` 1.2 (service default) |
| ``cispo`` | ``clip_low_threshold`` 0.0, ``clip_high_threshold`` 4.0 (service default) |
| ``gspo`` | ``clip_low_threshold`` 0.9997, ``clip_high_threshold`` 1.0004 (offline: GSPO paper) |
| ``dro`` | ``beta`` 0.05 (offline: the docs' example value) |
| ``stable_reinforce`` | ``kl_coeff`` 0.0 (offline) |

Per-token ``clip_low_threshold`` / ``clip_high_threshold`` tensors in ``loss_fn_inputs``
override the config value for their tokens (ppo, cispo, gspo).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tinkerkit.errors import InvalidDatumError, RequestError, UnknownLossError

LOW, HIGH = "clip_low_threshold", "clip_high_threshold"
STABLE_REINFORCE_RATIO_CAP = 2.0
"""``stable_reinforce`` truncates the ratio to the recorded sampler at this value."""
RECORDED_LOGPROBS = "_recorded_logprobs"
"""Input filled by the backend for ``stable_reinforce``: the sampler's recorded logprob of
each sampled target (0 on prompt positions)."""
SAMPLED = "_sampled"
"""Input filled by the backend for ``stable_reinforce``: 1 where the target is a sampled
token, 0 on prompt positions."""

Inputs = dict[str, np.ndarray]
LossFn = Callable[[np.ndarray, Inputs, Mapping[str, float]], tuple[np.ndarray, np.ndarray]]
CheckFn = Callable[[int, Inputs, Mapping[str, float]], None]


@dataclass(frozen=True)
class LossSpec:
    """What one built-in loss reads and how it computes its per-token loss."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    defaults: Mapping[str, float]
    """``loss_fn_config`` keys this loss takes, with their defaults."""
    fn: LossFn
    check: CheckFn | None = None
    """Datum-level checks that need the config (raise ``InvalidDatumError``)."""
    accepts_2d: bool = False
    """Whether ``target_tokens``/``weights`` may be ``(N, K)``."""
    needs_provenance: bool = False
    """Whether every datum must carry provenance spans into recorded sequences."""
    nonnegative: tuple[str, ...] = field(default=())

    @property
    def config_keys(self) -> tuple[str, ...]:
        return tuple(self.defaults)


# --- the losses ------------------------------------------------------------------------


def _cross_entropy(lp, inputs, config):
    w = inputs["weights"]
    return -w * lp, -w


def _ratio(lp, inputs):
    return np.exp(lp - inputs["logprobs"])


def _importance_sampling(lp, inputs, config):
    a, w = inputs["advantages"], inputs["weights"]
    r = _ratio(lp, inputs)
    return -w * r * a, -w * r * a


def _bounds(inputs, config):
    """Per-token clip bounds: the ``loss_fn_inputs`` tensors where given, else the config."""
    return inputs.get(LOW, config[LOW]), inputs.get(HIGH, config[HIGH])


def _clipped_surrogate(r, a, w, low, high):
    """``-w * min(r A, clip(r) A)`` and its gradient, for a ratio with d r / d lp = r."""
    clipped = np.clip(r, low, high)
    unclipped_obj = r * a
    clipped_obj = clipped * a
    loss = -w * np.minimum(unclipped_obj, clipped_obj)
    # The clipped branch has no gradient where the ratio is clipped.
    active = (unclipped_obj <= clipped_obj) | ((r >= low) & (r <= high))
    return loss, np.where(active, -w * r * a, 0.0)


def _ppo(lp, inputs, config):
    low, high = _bounds(inputs, config)
    return _clipped_surrogate(
        _ratio(lp, inputs), inputs["advantages"], inputs["weights"], low, high
    )


def _cispo(lp, inputs, config):
    a, w = inputs["advantages"], inputs["weights"]
    low, high = _bounds(inputs, config)
    coeff = np.clip(_ratio(lp, inputs), low, high)
    return -w * coeff * lp * a, -w * coeff * a


def _dro(lp, inputs, config):
    a, w = inputs["advantages"], inputs["weights"]
    beta = config["beta"]
    diff = lp - inputs["logprobs"]
    return -w * (lp * a - 0.5 * beta * diff * diff), -w * (a - beta * diff)


def _gspo(lp, inputs, config):
    # GSPO-token: every token carries the sequence ratio's value, s_t = sg(s) * p_t / sg(p_t),
    # so d s_t / d lp_t = s — the PPO surrogate with r replaced by s.
    in_ratio = inputs["sequence_ratio_mask"] != 0
    log_s = float(np.mean(lp[in_ratio] - inputs["logprobs"][in_ratio]))
    s = np.full_like(lp, math.exp(log_s))
    low, high = _bounds(inputs, config)
    return _clipped_surrogate(s, inputs["advantages"], inputs["weights"], low, high)


def _stable_reinforce(lp, inputs, config):
    a, w = inputs["advantages"], inputs["weights"]
    q = inputs[RECORDED_LOGPROBS]
    sampled = inputs[SAMPLED] != 0
    coeff = np.minimum(np.exp(lp - q), STABLE_REINFORCE_RATIO_CAP)
    diff = lp - q
    kl = config["kl_coeff"]
    loss = np.where(sampled, w * (-coeff * a * lp + 0.5 * kl * diff * diff), 0.0)
    grad = np.where(sampled, w * (-coeff * a + kl * diff), 0.0)
    return loss, grad


# --- datum-level checks that need the config ------------------------------------------


def _check_bounds(index: int, inputs: Inputs, config: Mapping[str, float]) -> None:
    if LOW not in inputs and HIGH not in inputs:
        return  # the config's bounds were checked with the config
    low, high = _bounds(inputs, config)
    shape = inputs["advantages"].shape
    low, high = np.broadcast_to(low, shape), np.broadcast_to(high, shape)
    bad = np.flatnonzero(low > high)
    if bad.size:
        t = int(bad[0])
        raise InvalidDatumError(
            index,
            f"at position {t} clip_low_threshold ({float(low[t])}) exceeds "
            f"clip_high_threshold ({float(high[t])}).",
            "The thresholds are absolute ratio bounds with low <= high, e.g. 0.8 and 1.2.",
        )


def _check_gspo(index: int, inputs: Inputs, config: Mapping[str, float]) -> None:
    if not np.any(inputs["sequence_ratio_mask"] != 0):
        raise InvalidDatumError(
            index,
            "sequence_ratio_mask has no nonzero entry, so GSPO's sequence ratio (a mean over "
            "the marked positions) is undefined.",
            "Mark the sampled tokens with 1, e.g. [0.0] * prompt_targets + [1.0] * num_sampled.",
        )
    _check_bounds(index, inputs, config)


def _check_stable_reinforce(index: int, inputs: Inputs, config: Mapping[str, float]) -> None:
    on_prompt = np.flatnonzero((inputs[SAMPLED] == 0) & (inputs["advantages"] != 0))
    if on_prompt.size:
        t = int(on_prompt[0])
        raise InvalidDatumError(
            index,
            "stable_reinforce only accepts nonzero advantages on sampled tokens; position "
            f"{t} is a prompt token (PromptProvenanceSpan) with advantage "
            f"{float(inputs['advantages'][t])}.",
            "Set the advantages of prompt positions to 0.",
        )


_RL_INPUTS = ("target_tokens", "logprobs", "advantages")
_CLIPS = {"ppo": (0.8, 1.2), "cispo": (0.0, 4.0), "gspo": (1 - 3e-4, 1 + 4e-4)}


def _clip_defaults(loss: str) -> dict[str, float]:
    low, high = _CLIPS[loss]
    return {LOW: low, HIGH: high}


BUILTIN_LOSSES: dict[str, LossSpec] = {
    "cross_entropy": LossSpec(
        ("target_tokens",), ("weights",), {}, _cross_entropy, accepts_2d=True
    ),
    "importance_sampling": LossSpec(_RL_INPUTS, ("weights",), {}, _importance_sampling),
    "ppo": LossSpec(_RL_INPUTS, ("weights", LOW, HIGH), _clip_defaults("ppo"), _ppo, _check_bounds),
    "cispo": LossSpec(
        _RL_INPUTS, ("weights", LOW, HIGH), _clip_defaults("cispo"), _cispo, _check_bounds
    ),
    "dro": LossSpec(_RL_INPUTS, ("weights",), {"beta": 0.05}, _dro, nonnegative=("beta",)),
    "gspo": LossSpec(
        (*_RL_INPUTS, "sequence_ratio_mask"),
        ("weights", LOW, HIGH),
        _clip_defaults("gspo"),
        _gspo,
        _check_gspo,
    ),
    "stable_reinforce": LossSpec(
        ("target_tokens", "advantages"),
        ("weights", "logprobs"),
        {"kl_coeff": 0.0},
        _stable_reinforce,
        _check_stable_reinforce,
        needs_provenance=True,
        nonnegative=("kl_coeff",),
    ),
}

_CUSTOM_HINT = (
    "loss_fn='custom' runs a loss stored on the service with create_custom_loss "
    "(loss_fn_config={'loss_id': ...}). Offline, custom losses run client-side: their "
    "LossHandle has loss_id None. Pass the handle (or a loss function) to "
    "training_client.forward_backward_custom(data, handle) instead."
)


def get_loss(name: str) -> LossSpec:
    """The spec of a built-in loss; ``UnknownLossError`` naming the built-ins otherwise."""
    spec = BUILTIN_LOSSES.get(name)
    if spec is None:
        if name == "custom":
            raise RequestError(_CUSTOM_HINT)
        raise UnknownLossError(name, BUILTIN_LOSSES)
    return spec


def _number(name: str, key: str, value: object) -> float:
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or not math.isfinite(number):
        raise RequestError(
            f"loss_fn_config[{key!r}] = {value!r} is not a finite number; {name!r} takes a "
            f"number for {key!r} (a string is accepted if it parses as one, e.g. '0.2')."
        )
    return number


def check_config(name: str, config: Mapping[str, float | str] | None) -> dict[str, float]:
    """``loss_fn_config`` for ``name`` validated and merged over the loss's defaults.

    Unknown keys are an error, not ignored; strings must parse as numbers.

    Example:
        >>> check_config("ppo", {"clip_high_threshold": "1.5"})
        {'clip_low_threshold': 0.8, 'clip_high_threshold': 1.5}
    """
    spec = get_loss(name)
    out = dict(spec.defaults)
    for key, value in (config or {}).items():
        if key not in spec.defaults:
            allowed = ", ".join(spec.config_keys) or "none"
            raise RequestError(
                f"loss_fn_config key {key!r} is not used by {name!r} (accepted: {allowed})."
            )
        out[key] = _number(name, key, value)
        if key in spec.nonnegative and out[key] < 0:
            raise RequestError(f"loss_fn_config[{key!r}] must be >= 0 for {name!r}, got {value!r}.")
    if LOW in out and out[LOW] > out[HIGH]:
        raise RequestError(
            f"loss_fn_config: clip_low_threshold ({out[LOW]}) exceeds clip_high_threshold "
            f"({out[HIGH]}); they are absolute ratio bounds with low <= high."
        )
    return out


def check_inputs(name: str, index: int, inputs: Inputs, config: Mapping[str, float]) -> None:
    """The datum-level checks of ``name`` that need the config (``InvalidDatumError``)."""
    spec = get_loss(name)
    if spec.check is not None:
        spec.check(index, inputs, {**spec.defaults, **config})


def apply(
    name: str, logprobs: np.ndarray, inputs: Inputs, config: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token loss and d(loss)/d(logprobs) for one datum (float64 arrays).

    ``config`` may omit keys (their defaults apply).

    Example:
        >>> loss, grad = apply("cross_entropy", lp, {"weights": w}, {})
    """
    spec = get_loss(name)
    lp = logprobs.astype(np.float64)
    loss, grad = spec.fn(lp, inputs, {**spec.defaults, **config})
    return np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)
