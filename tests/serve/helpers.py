"""Datums built from token ids only (no tokenizer download), for the served tests."""

from __future__ import annotations

import numpy as np
from tinker import types


def datum(tokens: list[int]) -> types.Datum:
    """Next-token prediction on ``tokens`` with every position weighted 1."""
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "weights": [1.0] * (len(tokens) - 1),
        },
    )


def text_datum(text: str) -> types.Datum:
    # The offline models' byte tokenizer maps bytes to ids directly.
    return datum(list(text.encode()))


PROBE = text_datum("The probe datum, fixed for comparisons.")


def probe_logprobs(client) -> np.ndarray:
    out = client.forward([PROBE], "cross_entropy").result()
    return np.asarray(out.loss_fn_outputs[0]["logprobs"].to_numpy(), dtype=np.float64)
