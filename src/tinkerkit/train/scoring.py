"""Score datums with a sampling client: datum → its full sequence → ``compute_logprobs``.

A datum's ``model_input`` stops one token short of its sequence (the last target), so
scoring it with a sampling client means putting that token back, asking for the
sequence's logprobs, and dropping the first (nothing predicts it). The result lines up
with ``target_tokens``; ``weighted_scores`` turns it into ``Σ weights · logprobs``, the
sequence score DPO references and reward models use.

    logprobs = datum_logprobs(reference, datums)        # one array per datum
    scores = weighted_scores(datums, logprobs)          # one float per datum
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tinker import types

from tinkerkit.protocols import SamplingClientLike


def full_input(datum: types.Datum) -> types.ModelInput:
    """The sequence ``datum`` was cut from: its input (images included) plus its last target.

    Example:
        >>> full_input(tk.data.shifted_datum([1, 2, 3], [0, 1, 1])).to_ints()
        [1, 2, 3]
    """
    last = int(datum.loss_fn_inputs["target_tokens"].to_numpy()[-1])
    return datum.model_input.append_int(last)


def datum_logprobs(
    sampling_client: SamplingClientLike, datums: Sequence[types.Datum]
) -> list[np.ndarray]:
    """Per-target logprobs (float64) of each datum under ``sampling_client``; every
    request is sent before any result is read.

    Example:
        >>> datum_logprobs(base, [datum])[0].shape == datum.loss_fn_inputs["target_tokens"].shape
        True
    """
    futures = [sampling_client.compute_logprobs(full_input(d)) for d in datums]
    return [np.asarray(f.result()[1:], dtype=np.float64) for f in futures]


def weighted_scores(datums: Sequence[types.Datum], logprobs: Sequence[np.ndarray]) -> list[float]:
    """``Σ weights · logprobs`` of each datum (weights 1 where a datum has none).

    Example:
        >>> weighted_scores([datum], datum_logprobs(reward_model, [datum]))
        [-0.01]
    """
    out = []
    for datum, values in zip(datums, logprobs, strict=True):
        weights = datum.loss_fn_inputs.get("weights")
        w = np.ones_like(values) if weights is None else weights.to_numpy().astype(np.float64)
        out.append(float(np.sum(w * values)))
    return out
