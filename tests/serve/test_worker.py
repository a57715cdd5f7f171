"""Latency simulation, ordering, and fault injection of the service (server/worker.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tinker import RequestFailedError, types

import tinkerkit as tk
from tinkerkit.testing import FailNth, prompt_completion_datum


def _client(service):
    return service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4, seed=0).result()


def test_latency_delays_results_but_pipelines():
    service = tk.connect("mock", latency=0.2)
    client = _client(service)
    data = [prompt_completion_datum(client.get_tokenizer(), "a b", " c")]
    start = time.monotonic()
    futures = []
    for _ in range(5):
        futures.append(client.forward_backward(data, "cross_entropy"))
        futures.append(client.optim_step(types.AdamParams(learning_rate=1e-3)))
    submitted = time.monotonic() - start
    for f in futures:
        f.result()
    total = time.monotonic() - start
    assert submitted < 0.1  # nothing waited at submission
    # Ten requests in flight together: about one latency; one after another they would
    # take ten (2.0 s). The margin is for a loaded machine.
    assert 0.2 <= total < 1.2


def test_single_request_waits_a_full_latency():
    service = tk.connect("mock", latency=0.15)
    start = time.monotonic()
    _client(service)
    assert time.monotonic() - start >= 0.15


def test_futures_are_awaitable():
    service = tk.connect("mock")
    client = _client(service)
    data = [prompt_completion_datum(client.get_tokenizer(), "x y", " z")]

    async def run():
        fb = client.forward_backward(data, "cross_entropy")
        step = client.optim_step(types.AdamParams(learning_rate=1e-3))
        return await fb, await step

    out, _ = asyncio.run(run())
    assert out.metrics["loss:sum"] > 0


def test_injected_fault_fails_one_request_and_is_not_applied():
    service = tk.connect("mock", faults=[FailNth(2, kind="forward_backward")])
    client = _client(service)
    data = [prompt_completion_datum(client.get_tokenizer(), "x y", " z")]
    first = client.forward_backward(data, "cross_entropy").result()
    with pytest.raises(RequestFailedError, match="Injected fault"):
        client.forward_backward(data, "cross_entropy").result()
    third = client.forward_backward(data, "cross_entropy").result()
    # The failed request left no gradient behind: the loss is unchanged (no step taken).
    assert third.metrics["loss:sum"] == pytest.approx(first.metrics["loss:sum"])


def test_client_future_forwards_with_a_deprecation_warning():
    service = tk.connect("mock")
    future = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4)
    with pytest.warns(FutureWarning, match=r"\.result\(\)"):
        tokenizer = future.get_tokenizer()
    assert len(tokenizer) > 256


def test_stand_in_model_is_announced_once(caplog, monkeypatch):
    from tinkerkit.models import registry

    monkeypatch.setattr(registry, "_announced", set())
    service = tk.connect("mock")
    with caplog.at_level("INFO", logger="tinkerkit"):
        for _ in range(2):
            client = service.create_lora_training_client(
                base_model="Qwen/Qwen3-8B", rank=4
            ).result()
    notes = [r.getMessage() for r in caplog.records if "stands in" in r.getMessage()]
    assert len(notes) == 1 and "Qwen/Qwen3-8B" in notes[0]
    assert client.get_info().model_name == "Qwen/Qwen3-8B"
