"""Image chunks through ``tinkerkit serve`` with the official SDK give the very numbers
``tk.connect`` gives (issue 24): losses, logprobs, a training step, greedy samples, and
the same SDK error class for a wrong ``expected_tokens``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tinker
from tinker import types

import tinkerkit as tk
from tests.conformance.test_images import MODEL, image_datum, image_input
from tests.images import shape_png
from tinkerkit.server import serve


def _scenario(service: Any) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    pngs = [shape_png(name, rng) for name in ("circle", "square", "triangle")]
    data = [
        image_datum(png, answer) for png, answer in zip(pngs, (b" c", b" s", b" t"), strict=True)
    ]
    training = service.create_lora_training_client(base_model=MODEL, rank=4, seed=1).result()
    seen: dict[str, Any] = {}
    fb = training.forward_backward(data, "cross_entropy").result()
    seen["loss"] = fb.metrics["loss:sum"]
    seen["logprobs"] = [o["logprobs"].to_numpy().tolist() for o in fb.loss_fn_outputs]
    seen["step"] = training.optim_step(types.AdamParams(learning_rate=1e-2)).result().metrics
    seen["after"] = training.forward(data, "cross_entropy").result().metrics["loss:sum"]
    sampler = training.save_weights_and_get_sampling_client().result()
    greedy = types.SamplingParams(max_tokens=5, temperature=0.0, stop=[])
    answer = sampler.sample(image_input(pngs[0]), 2, greedy, include_prompt_logprobs=True).result()
    seen["tokens"] = [s.tokens for s in answer.sequences]
    seen["prompt_logprobs"] = answer.prompt_logprobs
    bad = image_input(pngs[1], expected=65)
    try:
        sampler.sample(bad, 1, greedy).result()
    except Exception as exc:
        seen["error"] = (type(exc), "expected_tokens=65" in str(exc))
    return seen


@pytest.mark.parametrize("backend", ["mock", "local"])
def test_images_served_agree_with_direct(backend):
    if backend == "local":
        pytest.importorskip("torch")
    direct = _scenario(tk.connect(backend))
    with serve(backend) as running:
        client = tinker.ServiceClient(base_url=running.base_url, api_key=running.api_key)
        served = _scenario(client)
        client.close("success").result(timeout=10)
    assert served == direct
    assert direct["error"] == (tinker.RequestFailedError, True)
    assert direct["after"] < direct["loss"]
