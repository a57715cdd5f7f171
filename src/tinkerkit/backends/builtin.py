"""One built-in-loss request (``forward`` / ``forward_backward``) on an engine.

Validation of the datums (and, for ``stable_reinforce``, of their provenance against
the sequences recorded at sampling time), the loss of every datum from its target
logprobs, the outputs and metrics the service documents (``logprobs`` per datum,
``loss:sum``), and — for ``forward_backward`` — the gradient pushed back into the
engine. The training client only orders requests; everything a built-in loss means
is here and in ``losses``/``validation``/``stability``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tinker import types

from tinkerkit.backends.engine import BatchTraining, Engine
from tinkerkit.backends.stability import SequenceRecords, provenance_inputs
from tinkerkit.backends.validation import check_batch
from tinkerkit.errors import RequestError
from tinkerkit.rules import losses


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
    records: SequenceRecords | None = None,
) -> types.ForwardBackwardOutput:
    """Loss, per-token outputs and metrics of ``loss_fn`` on ``data``; gradients if ``backward``.

    ``records``: the sequences the service recorded at sampling time, which
    ``stable_reinforce`` reads.

    Example:
        >>> out = run_builtin(engine, data, "cross_entropy", None, backward=True)
        >>> out.metrics["loss:sum"]
    """
    spec = losses.get_loss(loss_fn)
    config = losses.check_config(loss_fn, loss_fn_config)
    checked = check_batch(data, engine.spec, spec, loss_fn)
    if spec.needs_provenance:
        if records is None:
            raise RequestError(
                f"{loss_fn} needs the sequences this session recorded at sampling time; run it "
                "through a training client of the service that sampled them."
            )
        for i, (item, datum) in enumerate(zip(checked, data, strict=True)):
            targets = item.inputs["target_tokens"]
            item.inputs.update(provenance_inputs(i, datum, targets, records))
    for i, item in enumerate(checked):
        losses.check_inputs(loss_fn, i, item.inputs, config)
    outputs: list[dict[str, types.TensorData]] = [{} for _ in checked]
    sums = [0.0] * len(checked)

    def gradient(i: int, lp: np.ndarray) -> np.ndarray:
        per_token, grad = losses.apply(loss_fn, lp, checked[i].inputs, config)
        sums[i] = float(per_token.sum())
        # The service documents one output per datum, the target logprobs.
        outputs[i] = {"logprobs": tensor(lp)}
        return grad

    inputs = [c.engine_input for c in checked]
    if backward and isinstance(engine, BatchTraining):
        engine.forward_backward(inputs, gradient)
    else:
        fp = engine.forward(inputs, grad=backward)
        grads = [gradient(i, lp) for i, lp in enumerate(fp.logprobs)]
        if backward:
            fp.backward(grads)
    total = 0.0
    for value in sums:  # in datum order, whatever order the engine scored them in
        total += value
    return types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=outputs,
        metrics={"loss:sum": total},
    )
