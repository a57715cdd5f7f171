from __future__ import annotations

import numpy as np
from tinker import types

from tinkerkit.testing import prompt_completion_datum

QA = [
    ("Q: What is the capital of France?\nA:", " Paris."),
    ("Q: Which planet is red?\nA:", " Mars."),
    ("Q: What do bees make?\nA:", " Honey."),
    ("Q: Opposite of hot?\nA:", " Cold."),
]


def qa_datums(tokenizer) -> list[types.Datum]:
    return [prompt_completion_datum(tokenizer, p, c) for p, c in QA]


def logprobs(output: types.ForwardBackwardOutput) -> list[np.ndarray]:
    return [np.asarray(o["logprobs"].to_numpy(), dtype=np.float64) for o in output.loss_fn_outputs]


def weights(datum: types.Datum) -> np.ndarray:
    return np.asarray(datum.loss_fn_inputs["weights"].to_numpy(), dtype=np.float64)


def ce_loss(datums, output) -> float:
    return float(
        sum(-(weights(d) * lp).sum() for d, lp in zip(datums, logprobs(output), strict=False))
    )


def rl_datum(datum: types.Datum, sampling_logprobs, advantages) -> types.Datum:
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={
            "target_tokens": datum.loss_fn_inputs["target_tokens"],
            "logprobs": types.TensorData.from_numpy(np.asarray(sampling_logprobs, np.float32)),
            "advantages": types.TensorData.from_numpy(np.asarray(advantages, np.float32)),
        },
    )
