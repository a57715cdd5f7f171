"""8 official clients at once, 50 pipelined steps each: every step applied once, in order."""

from __future__ import annotations

import threading

import numpy as np
from tinker import types

import tinkerkit as tk
from tests.serve.helpers import probe_logprobs, text_datum

CLIENTS, STEPS = 8, 24
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
