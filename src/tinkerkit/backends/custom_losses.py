"""``forward_backward_custom`` offline: the SDK's argument checks and the service's surrogate.

The SDK runs a custom loss as two requests: a ``cross_entropy`` forward for the target
logprobs, the user's loss on them in torch, then a ``cross_entropy`` forward/backward
with ``weights = -dloss/dlogprobs`` (a linear surrogate whose gradient is the loss's).
Offline both halves run in one engine pass with the same numbers: ``loss:sum`` is the
custom loss, ``surrogate_loss:sum`` the surrogate's, the outputs the surrogate's
``logprobs``. ``LossHandle``s from ``create_custom_loss`` run per datum through the SDK's
own ``run_loss_handle``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from tinker import types
from tinker.lib.public_interfaces.custom_loss import LossHandle, check_loss_inputs, run_loss_handle

from tinkerkit.backends.builtin import tensor
from tinkerkit.backends.engine import Engine
from tinkerkit.backends.validation import check_batch
from tinkerkit.errors import RequestError
from tinkerkit.rules import losses

CustomLossFn = Callable[[list[types.Datum], list[Any]], tuple[Any, dict[str, float]]]


def check_custom_call(
    data: Any,
    loss_fn: CustomLossFn | LossHandle,
    loss_type_input: str | None,
    session_id: str,
) -> list[types.Datum]:
    """What the SDK refuses before sending a custom-loss request, refused the same way.

    Example:
        >>> batch = check_custom_call(data, my_loss, None, service.session_id)
    """
    if loss_type_input is not None:
        warnings.warn(
            "The 'loss_type_input' parameter of forward_backward_custom() is deprecated: "
            "the loss always receives logprobs. This parameter will be removed in a future "
            "release; remove it from your call.",
            DeprecationWarning,
            stacklevel=3,
        )
        if loss_type_input != "logprobs":
            raise ValueError(
                f"Unsupported loss_type_input={loss_type_input!r}. Supported values are: logprobs"
            )
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "PyTorch is not installed. Cannot run custom forward_backward "
            "(pip install 'tinkerkit[local]')."
        ) from exc
    if isinstance(loss_fn, LossHandle):
        if loss_fn.session_id != session_id:
            raise ValueError(
                f"LossHandle {loss_fn.name!r} was created in session {loss_fn.session_id}; "
                "it can only be used by clients of that session"
            )
        check_loss_inputs(loss_fn, data)
    elif not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(data, logprobs) -> (loss, metrics)")
    if not data:
        raise ValueError("No data provided")
    batch = list(data)
    for datum in batch:
        if "target_tokens" not in datum.loss_fn_inputs:
            raise ValueError("target_tokens must be provided when using cross_entropy")
    return batch


def run_custom(
    engine: Engine, data: list[types.Datum], loss_fn: CustomLossFn | LossHandle
) -> types.ForwardBackwardOutput:
    """One custom-loss forward/backward on ``engine``; gradients added to its buffers."""
    import torch

    checked = check_batch(data, engine.spec, None)
    fp = engine.forward([c.engine_input for c in checked], grad=True)
    tensors = [
        torch.tensor(lp, dtype=torch.float32).clone().detach().requires_grad_(True)
        for lp in fp.logprobs
    ]
    if isinstance(loss_fn, LossHandle):
        loss, metrics = run_loss_handle(loss_fn, data, tensors)
    else:
        loss, metrics = loss_fn(data, tensors)
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            "custom loss_fn must return (loss, metrics) with loss a torch tensor; got "
            f"{type(loss).__name__}."
        )
    loss_sum = float(loss.detach().sum().item())
    loss.backward()
    grads = []
    for t in tensors:
        if t.grad is None:
            raise ValueError("No gradient computed for logprob tensor")
        g = t.grad.numpy().astype(np.float64)
        if not np.all(np.isfinite(g)):
            raise RequestError(
                "custom loss produced a NaN or infinite gradient; nothing was applied."
            )
        grads.append(g)
    # The service's surrogate: cross_entropy with weights = -dC/dlogprobs.
    outputs, surrogate = [], 0.0
    for lp, g in zip(fp.logprobs, grads, strict=True):
        per_token, _ = losses.apply("cross_entropy", lp, {"weights": -g}, {})
        surrogate += float(per_token.sum())
        outputs.append({"logprobs": tensor(lp)})
    fp.backward(grads)
    out_metrics = {k: float(v) for k, v in dict(metrics or {}).items()}
    out_metrics["loss:sum"] = loss_sum
    out_metrics["surrogate_loss:sum"] = surrogate
    return types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord", loss_fn_outputs=outputs, metrics=out_metrics
    )
