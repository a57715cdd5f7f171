"""A tinker-cookbook-style pipelined SFT loop, only ``tinker`` imports, on the local backend."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import tinker
from tinker import types

from tinkerkit.server import serve

EXAMPLES = [
    ("Q: capital of France?\nA:", " Paris"),
    ("Q: red planet?\nA:", " Mars"),
    ("Q: bees make?\nA:", " honey"),
    ("Q: opposite of hot?\nA:", " cold"),
]


def _datum(prompt: str, completion: str) -> types.Datum:
    # The offline models use a byte tokenizer: ids are the UTF-8 bytes.
    p, c = list(prompt.encode()), list(completion.encode())
    tokens = p + c
    weights = [0.0] * (len(p) - 1) + [1.0] * len(c)
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
    )


def sft_loop(base_url: str, api_key: str, steps: int = 12) -> list[float]:
    """What a cookbook SFT recipe does: submit step t+1 before waiting for step t."""
    service = tinker.ServiceClient(base_url=base_url, api_key=api_key)
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=8, seed=0)
    training = training.result()
    batch = [_datum(p, c) for p, c in EXAMPLES]
    adam = types.AdamParams(learning_rate=1e-2)
    losses: list[float] = []
    pending = (training.forward_backward(batch, "cross_entropy"), training.optim_step(adam))
    for _ in range(steps - 1):
        nxt = (training.forward_backward(batch, "cross_entropy"), training.optim_step(adam))
        fb, op = pending
        out = fb.result()
        op.result()
        weight = sum(sum(d.loss_fn_inputs["weights"].tolist()) for d in batch)
        losses.append(out.metrics["loss:sum"] / weight)
        pending = nxt
    sampler = training.save_weights_and_get_sampling_client().result()
    sample = sampler.sample(
        types.ModelInput.from_ints(list(EXAMPLES[0][0].encode())),
        1,
        types.SamplingParams(max_tokens=4, temperature=0.0),
    ).result()
    assert sample.sequences[0].tokens
    service.close("success").result(timeout=10)  # no heartbeat outlives the server
    return losses


def test_cookbook_sft_loop_on_local_backend():
    with serve("local") as server:
        losses = sft_loop(server.base_url, server.api_key)
    assert losses[-1] < 0.7 * losses[0], losses
