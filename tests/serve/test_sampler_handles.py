"""The SDK's sampling clients, served by tinkerkit, cross process boundaries: pickling
and handles reach the same service from a worker process."""

from __future__ import annotations

import base64
import json
import multiprocessing
import pickle

import pytest
import tinker
from tinker import types

import tinkerkit as tk

PROMPT = types.ModelInput.from_ints([72, 105, 33, 10])
GREEDY = types.SamplingParams(max_tokens=6, temperature=0.0)


def _tokens(sampler) -> list[int]:
    return sampler.sample(PROMPT, 1, GREEDY).result().sequences[0].tokens


def _sample_in_child(payload: bytes) -> list[int]:
    return _tokens(pickle.loads(payload))


@pytest.fixture
def trained(tk_training_client, tk_service):
    data = [
        types.Datum(
            model_input=types.ModelInput.from_ints([72, 105, 33, 10, 97]),
            loss_fn_inputs={"target_tokens": [105, 33, 10, 97, 98]},
        )
    ]
    for _ in range(5):
        tk_training_client.forward_backward(data, "cross_entropy")
        tk_training_client.optim_step(types.AdamParams(learning_rate=5e-2))
    return tk_training_client


def test_snapshot_survives_pickling_in_another_process(trained, tk_service):
    sampler = trained.save_weights_and_get_sampling_client().result()
    base = tk_service.create_sampling_client(base_model="tinkerkit/tiny").result()
    expected = _tokens(sampler)
    assert expected != _tokens(base)  # the trained weights matter to the answer
    payload = pickle.dumps(sampler)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        assert pool.apply(_sample_in_child, (payload,)) == expected
    again = pickle.loads(payload)
    assert isinstance(again, tinker.SamplingClient) and _tokens(again) == expected


def test_handles_rebuild_the_same_sampler(trained, tk_service):
    key = tk.connection_of(tk_service).api_key
    path = trained.save_weights_for_sampler("handles").result().path
    for sampler in (
        trained.save_weights_and_get_sampling_client().result(),
        trained.create_sampling_client(path).result(),
    ):
        handle = sampler.get_sampler_handle()
        fields = json.loads(base64.urlsafe_b64decode(handle))
        assert fields["holder"]["api_key"] is None and key not in json.dumps(fields)
        rebuilt = tinker.SamplingClient.from_sampler_handle(handle, api_key=key)
        assert _tokens(rebuilt) == _tokens(sampler)
        assert rebuilt.get_base_model() == sampler.get_base_model()
