"""Official clients at once: 8 clients' pipelined steps each applied once, in order; a
soak of 16 clients mixing forward_backward, sample and save for ``TINKERKIT_SOAK_S``
seconds (2 by default; 60 by hand), then clients that disconnect mid-request."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import tinker
from tinker import types

import tinkerkit as tk
from tests.serve.helpers import Raw, ServerLog, probe_logprobs, text_datum
from tinkerkit.server import serve

CLIENTS, STEPS = 8, 12
MODEL = "tinkerkit/tiny"


def _step(client_index: int, step: int) -> tuple[list[types.Datum], types.AdamParams]:
    # Different data and learning rate every step: a reordered, lost or repeated step
    # changes the final weights.
    data = [text_datum(f"client {client_index} step {step}: {'ab' * (step % 5)}")]
    return data, types.AdamParams(learning_rate=1e-3 * (1 + step % 7))


def _submit_all(training, client_index: int) -> list:
    futures = []
    for step in range(STEPS):
        data, params = _step(client_index, step)
        futures.append(training.forward_backward(data, "cross_entropy"))
        futures.append(training.optim_step(params))
    return futures


def _train(training, client_index: int) -> None:
    for future in _submit_all(training, client_index):
        future.result()


def test_concurrent_clients_match_serial_runs(official):
    clients = [
        official.create_lora_training_client(base_model=MODEL, rank=4, seed=i).result()
        for i in range(CLIENTS)
    ]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            _train(clients[i], i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    # The reference: the same steps on tk.connect("mock") directly, each client serial
    # (its own dispatcher), all clients submitted up front so they overlap.
    direct = tk.connect("mock")
    serial = [
        direct.create_lora_training_client(base_model=MODEL, rank=4, seed=i).result()
        for i in range(CLIENTS)
    ]
    pending = [_submit_all(client, i) for i, client in enumerate(serial)]
    for futures in pending:
        for future in futures:
            future.result()
    for served, reference in zip(clients, serial, strict=True):
        np.testing.assert_allclose(probe_logprobs(served), probe_logprobs(reference), atol=1e-6)


# --- the soak: 16 SDK clients mixing every kind of request, then clients that go away ------

SOAK_CLIENTS = 16
SOAK_S = float(os.environ.get("TINKERKIT_SOAK_S", "2"))
"""How long the soak runs (``TINKERKIT_SOAK_S=60`` by hand: figures in docs/serve.md)."""
SAMPLE_PARAMS = types.SamplingParams(max_tokens=4, temperature=1.0, seed=7)
PROMPT = types.ModelInput.from_ints(list(b"Once upon"))


@dataclass
class Soaked:
    """What one client did: its steps, what it sampled, the checkpoints it kept."""

    steps: int = 0
    samples: dict[int, list[list[int]]] = field(default_factory=dict)
    requests: int = 0
    saved: list[str] = field(default_factory=list)


def _soak_step(training, rest, client_index: int, step: int, soaked: Soaked) -> None:
    """One step of a soak client: forward_backward + optim_step; every 3rd a snapshot
    and a sample from it; every 5th a checkpoint, the one before it deleted (bounded)."""
    data, params = _step(client_index, step)
    fb = training.forward_backward(data, "cross_entropy")
    step_done = training.optim_step(params)
    fb.result()
    step_done.result()
    soaked.requests += 2
    if step % 3 == 2:
        sampler = training.save_weights_and_get_sampling_client().result()
        out = sampler.sample(PROMPT, 2, SAMPLE_PARAMS).result()
        soaked.samples[step] = [list(s.tokens) for s in out.sequences]
        soaked.requests += 2
    if step % 5 == 4 and rest is not None:
        path = training.save_state(f"soak-{step}").result().path
        soaked.requests += 1
        if soaked.saved:
            rest.delete_checkpoint_from_tinker_path(soaked.saved.pop()).result()
            soaked.requests += 1
        soaked.saved.append(path)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _disconnect_midway(server, model_id: str) -> None:
    """Clients that go away: half a body on every kind of request."""
    raw = Raw(server.base_url, server.api_key)
    try:
        body = json.dumps({"model_id": model_id, "seq_id": 10**6, "path": "gone"}).encode()
        for path in ("forward_backward", "optim_step", "save_weights", "asample", "create_model"):
            raw.partial(path, body, len(body) // 2).close()
        raw.partial("retrieve_future", b'{"request_id": "req-none"}', 10).close()
    finally:
        raw.close()


@pytest.fixture
def soak_server():
    """A server of the soak's own: what it holds afterwards is the soak's alone."""
    with serve("mock") as running:
        official = tinker.ServiceClient(base_url=running.base_url, api_key=running.api_key)
        yield running, official
        official.close("success").result(timeout=10)


def test_sixteen_sdk_clients_soak_then_some_disconnect(soak_server):
    server, official = soak_server
    (service_state,) = server.app.state.host.services()
    clients = [
        official.create_lora_training_client(base_model=MODEL, rank=4, seed=i).result()
        for i in range(SOAK_CLIENTS)
    ]
    rests = [
        tinker.RestClient(base_url=server.base_url, api_key=server.api_key)
        for _ in range(SOAK_CLIENTS)
    ]
    soaked = [Soaked() for _ in range(SOAK_CLIENTS)]
    errors: list[BaseException] = []
    rss = [_rss_mb()]
    deadline = time.monotonic() + SOAK_S

    def run(i: int) -> None:
        try:
            while time.monotonic() < deadline:
                _soak_step(clients[i], rests[i], i, soaked[i].steps, soaked[i])
                soaked[i].steps += 1
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    with ServerLog() as log:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(SOAK_CLIENTS)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            threads[0].join(timeout=max(1.0, SOAK_S / 4))
            rss.append(_rss_mb())
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        # Then clients that go away mid-request; every client trains on, unharmed.
        _disconnect_midway(server, clients[0].model_id)
        log.wait_for("client disconnected during POST /api/v1/retrieve_future")
        for i, client in enumerate(clients):
            _soak_step(client, None, i, soaked[i].steps, soaked[i])
            soaked[i].steps += 1
    log.assert_clean()
    calls = sum(s.requests for s in soaked)
    steps = sum(s.steps for s in soaked)
    http = sum(1 for line in log.lines() if line.startswith(("POST ", "GET ", "DELETE ")))
    print(
        f"\nsoak: {SOAK_S:g} s, {SOAK_CLIENTS} SDK clients, {steps} steps, {calls} SDK calls "
        f"({http} HTTP requests), 0 errors; RSS {rss[0]:.0f} -> {rss[len(rss) // 2]:.0f} -> "
        f"{rss[-1]:.0f} MB; {len(service_state.futures)} results held"
    )
    assert all(s.steps >= 1 for s in soaked)
    # Every result was delivered: none waits for a client that is gone.
    undelivered = [e for e in service_state.futures._pending.values() if e.delivered_at is None]
    assert not undelivered, undelivered[:3]
    # Bounded: every client keeps at most one checkpoint.
    for client, rest in zip(clients, rests, strict=True):
        assert len(rest.list_checkpoints(client.model_id).result().checkpoints) <= 1
    if SOAK_S >= 30:  # flat memory once warm (the short default run is all warm-up)
        assert rss[-1] - rss[len(rss) // 2] < 100, rss

    # The reference: the same steps and samples on tk.connect("mock"), one client at a time.
    direct = tk.connect("mock")
    for i, served in enumerate(clients):
        reference = direct.create_lora_training_client(base_model=MODEL, rank=4, seed=i).result()
        replayed = Soaked()
        for step in range(soaked[i].steps):
            _soak_step(reference, None, i, step, replayed)
        assert replayed.samples == soaked[i].samples, i
        np.testing.assert_allclose(probe_logprobs(served), probe_logprobs(reference), atol=1e-6)
