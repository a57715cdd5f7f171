"""Losses the service has no built-in for, for ``forward_backward_custom``.

A custom loss has the service's signature ``loss_fn(data, logprobs) -> (loss, metrics)``:
``data`` is the list of ``Datum`` sent, ``logprobs`` one torch tensor of target-token
logprobs per datum. It runs on every backend (on the service, its gradient with respect
to the logprobs is sent back as a linear surrogate).

- ``dpo(ref_logprobs, beta)``: Direct Preference Optimization on pairs;
- ``bradley_terry(scale)``: reward-model training on preference pairs;
- ``register`` / ``get``: name your own losses; ``check_loss``: verify a loss's gradient.

Every sequence is scored the same way: ``score = Σ_t weights_t · logprob_t`` (the
datum's ``weights`` pick the tokens that count: the response for DPO, the score token
for a reward model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.errors import LossCheckError as LossCheckError
from tinkerkit.protocols import SamplingClientLike
from tinkerkit.train.scoring import datum_logprobs

LossFn = Callable[[list[types.Datum], list[Any]], tuple[Any, dict[str, float]]]

_REGISTRY: dict[str, Callable[..., LossFn]] = {}


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("custom losses need PyTorch: pip install 'tinkerkit[local]'") from exc
    return torch


def sequence_scores(data: Sequence[types.Datum], logprobs: Sequence[Any]) -> Any:
    """``Σ weights · logprobs`` per datum, as one torch tensor (differentiable)."""
    torch = _torch()
    scores = []
    for datum, lp in zip(data, logprobs, strict=True):
        weights = datum.loss_fn_inputs.get("weights")
        w = (
            torch.ones_like(lp)
            if weights is None
            else torch.as_tensor(weights.to_numpy(), dtype=lp.dtype)
        )
        scores.append((w * lp).sum())
    return torch.stack(scores)


def _pairs(n: int) -> None:
    if n == 0 or n % 2:
        raise ValueError(
            f"preference losses take data ordered [chosen_0, rejected_0, chosen_1, ...]; got {n} datums"
        )


def dpo(ref_logprobs: Sequence[Any], beta: float = 0.1) -> LossFn:
    """The DPO loss for pairs ordered ``[chosen_0, rejected_0, chosen_1, ...]``.

    ``loss = mean_pairs -logsigmoid(beta * ((c - c_ref) - (r - r_ref)))`` where each
    score is ``Σ weights · logprobs``. ``ref_logprobs`` has one entry per datum: the
    reference model's per-token logprobs (then weighted like the policy's) or already a
    sequence score (a float). ``reference_logprobs`` computes them.

    Example:
        >>> ref = tk.losses.reference_logprobs(base_sampler, data)
        >>> out = training.forward_backward_custom(data, tk.losses.dpo(ref, beta=0.1)).result()
        >>> out.metrics["accuracy"], out.metrics["margin"]
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    refs = list(ref_logprobs)

    def loss_fn(data: list[types.Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        torch = _torch()
        _pairs(len(data))
        if len(refs) != len(data):
            raise ValueError(f"{len(refs)} reference entries for {len(data)} datums")
        policy = sequence_scores(data, logprobs)
        reference = torch.stack(
            [
                torch.as_tensor(
                    float(np.sum(np.asarray(r, dtype=np.float64) * _weights(d, r))),
                    dtype=policy.dtype,
                )
                for d, r in zip(data, refs, strict=True)
            ]
        )
        chosen = policy[0::2] - reference[0::2]
        rejected = policy[1::2] - reference[1::2]
        margin = beta * (chosen - rejected)
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        return loss, {
            "dpo_loss": loss.item(),
            "accuracy": (margin > 0).float().mean().item(),
            "margin": margin.mean().item() / beta,
            "chosen_reward": (beta * chosen).mean().item(),
            "rejected_reward": (beta * rejected).mean().item(),
        }

    return loss_fn


def _weights(datum: types.Datum, ref: Any) -> np.ndarray:
    ref_array = np.asarray(ref, dtype=np.float64)
    if ref_array.ndim == 0:
        return np.ones(())  # already a sequence score
    weights = datum.loss_fn_inputs.get("weights")
    w = (
        np.ones_like(ref_array)
        if weights is None
        else np.asarray(weights.to_numpy(), dtype=np.float64)
    )
    if w.shape != ref_array.shape:
        raise ValueError(f"reference logprobs have shape {ref_array.shape}, weights {w.shape}")
    return w


def bradley_terry(scale: float = 1.0) -> LossFn:
    """Reward-model loss on pairs ``[chosen_0, rejected_0, ...]``: ``-logsigmoid(s·(r_c − r_r))``.

    The reward of a sequence is ``Σ weights · logprobs`` — with
    ``tinkerkit.recipes.rlhf.reward_datum`` the weight sits on a single score token
    after the response, so the reward is the log-probability the model gives that
    token: a well-defined scalar a sampling client can compute later.

    Example:
        >>> training.forward_backward_custom(pairs, tk.losses.bradley_terry()).result()
    """

    def loss_fn(data: list[types.Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        torch = _torch()
        _pairs(len(data))
        rewards = sequence_scores(data, logprobs)
        diff = scale * (rewards[0::2] - rewards[1::2])
        loss = -torch.nn.functional.logsigmoid(diff).mean()
        return loss, {
            "bt_loss": loss.item(),
            "accuracy": (diff > 0).float().mean().item(),
            "reward_gap": (diff / scale).mean().item(),
        }

    return loss_fn


def reference_logprobs(
    sampling_client: SamplingClientLike, data: Sequence[types.Datum]
) -> list[np.ndarray]:
    """Per-token target logprobs of each datum under a (frozen) reference model.

    Requests go out together; the results line up with ``target_tokens``.

    Example:
        >>> ref = reference_logprobs(service.create_sampling_client(base_model=m).result(), data)
    """
    return datum_logprobs(sampling_client, data)


def register(name: str) -> Callable[[Callable[..., LossFn]], Callable[..., LossFn]]:
    """Register a loss factory under ``name`` (``get(name)(**kwargs)`` builds it).

    Example:
        >>> @tk.losses.register("mean_nll")
        ... def mean_nll():
        ...     def fn(data, logprobs):
        ...         loss = -sum(lp.mean() for lp in logprobs) / len(logprobs)
        ...         return loss, {"nll": loss.item()}
        ...     return fn
    """

    def decorator(factory: Callable[..., LossFn]) -> Callable[..., LossFn]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a loss named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def get(name: str) -> Callable[..., LossFn]:
    """The loss factory registered as ``name``."""
    if name not in _REGISTRY:
        raise KeyError(
            f"no loss named {name!r}; registered: {', '.join(sorted(_REGISTRY)) or 'none'}"
        )
    return _REGISTRY[name]


def check_loss(
    loss_fn: LossFn,
    data: Sequence[types.Datum],
    logprobs: Sequence[Any] | None = None,
    *,
    eps: float = 1e-6,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """Check that ``loss_fn``'s autograd gradient is finite and matches finite differences.

    Catches the usual mistakes: ``.item()``/``.detach()``/numpy in the middle of the loss
    (autograd then sees no or a partial gradient), NaNs, and a non-scalar loss. Runs in
    float64 on ``logprobs`` (random negative values when not given). Returns the largest
    differences; raises ``LossCheckError`` with the datum and position otherwise.

    Example:
        >>> tk.losses.check_loss(tk.losses.bradley_terry(), pairs)
        {'max_abs_error': 1.2e-10, 'max_grad': 0.25}
    """
    torch = _torch()
    rng = np.random.default_rng(seed)
    if logprobs is None:
        base = [-rng.uniform(0.1, 3.0, d.model_input.length) for d in data]
    else:
        base = [
            np.asarray(lp.detach().numpy() if hasattr(lp, "detach") else lp, dtype=np.float64)
            for lp in logprobs
        ]

    def evaluate(arrays: list[np.ndarray], grad: bool) -> tuple[Any, list[Any]]:
        tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=grad) for a in arrays]
        loss, _ = loss_fn(list(data), tensors)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise LossCheckError(
                f"the loss must be a scalar torch tensor, got {type(loss).__name__}"
            )
        return loss, tensors

    loss, tensors = evaluate(base, True)
    if not torch.isfinite(loss):
        raise LossCheckError(f"the loss is not finite ({loss.item()})")
    if not loss.requires_grad:
        raise LossCheckError(
            "the loss does not depend on the logprobs through autograd (was it detached?)"
        )
    loss.backward()
    worst, biggest = 0.0, 0.0
    for i, tensor in enumerate(tensors):
        grad = np.zeros_like(base[i]) if tensor.grad is None else tensor.grad.numpy()
        if not np.all(np.isfinite(grad)):
            raise LossCheckError(f"the gradient for data[{i}] is not finite")
        for t in range(base[i].shape[0]):
            shifted = [a.copy() for a in base]
            shifted[i][t] += eps
            plus = evaluate(shifted, False)[0].item()
            shifted[i][t] -= 2 * eps
            minus = evaluate(shifted, False)[0].item()
            numeric = (plus - minus) / (2 * eps)
            error = abs(numeric - float(grad[t]))
            if error > tolerance * max(1.0, abs(numeric)):
                raise LossCheckError(
                    f"data[{i}] position {t}: autograd gradient {grad[t]:.6g} but finite "
                    f"differences give {numeric:.6g}; part of the loss is computed outside autograd"
                )
            worst, biggest = max(worst, error), max(biggest, abs(float(grad[t])))
    return {"max_abs_error": worst, "max_grad": biggest}
