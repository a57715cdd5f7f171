"""One built-in-loss request (``forward`` / ``forward_backward``) on an engine.

Validation of the datums, the loss of every datum from its target logprobs, the
outputs and metrics the service returns, and — for ``forward_backward`` — the
gradient pushed back into the engine. The training client only orders requests;
everything a built-in loss means is here and in ``losses``/``validation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.backends import losses
from tinkerkit.backends.engine import Engine
from tinkerkit.backends.validation import check_batch


def tensor(array: np.ndarray) -> types.TensorData:
    """A float32 ``TensorData`` of ``array`` (any shape)."""
    return types.TensorData.from_numpy(np.asarray(array, dtype=np.float32))


def run_builtin(
    engine: Engine,
    data: list[types.Datum],
    loss_fn: str,
    loss_fn_config: Mapping[str, float | str] | None,
    *,
    backward: bool,
    context: Any = None,
) -> types.ForwardBackwardOutput:
    """Loss, per-token outputs and metrics of ``loss_fn`` on ``data``; gradients if ``backward``.

    Example:
        >>> out = run_builtin(engine, data, "cross_entropy", None, backward=True)
        >>> out.metrics["loss:sum"]
    """
    spec = losses.get_loss(loss_fn)
    config = losses.check_config(loss_fn, loss_fn_config)
    checked = check_batch(data, engine.spec, spec)
    fp = engine.forward([c.engine_input for c in checked], grad=backward)
    outputs, grads, total = [], [], 0.0
    for item, lp in zip(checked, fp.logprobs, strict=True):
        per_token, grad = losses.apply(loss_fn, lp, item.inputs, config)
        total += float(per_token.sum())
        grads.append(grad)
        outputs.append({"logprobs": tensor(lp), "elementwise_loss": tensor(per_token)})
    if backward:
        fp.backward(grads)
    return types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=outputs,
        metrics={"loss:sum": total},
    )
