"""Checkpoints: exact save/load, sampler weights, external weights, names, listing."""

from __future__ import annotations

import uuid

import httpx
import numpy as np
import pytest
import safetensors.numpy
from tinker import types

import tinkerkit as tk
from tests.conformance.helpers import logprobs, qa_datums


def _train(client, data, steps=3, lr=1e-2):
    for _ in range(steps):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(types.AdamParams(learning_rate=lr))


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_state_round_trip_gives_identical_logprobs(service, training, tokenizer):
    data = qa_datums(tokenizer)
    _train(training, data)
    path = training.save_state(_name("state")).result().path
    assert path.startswith("tinker://") and "/weights/" in path
    restored = service.create_training_client_from_state(path).result()
    a = logprobs(training.forward(data, "cross_entropy").result())
    b = logprobs(restored.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_state_with_optimizer_continues_identically(service, training, tokenizer):
    data = qa_datums(tokenizer)
    _train(training, data)
    path = training.save_state(_name("state")).result().path
    resumed = service.create_training_client_from_state_with_optimizer(path).result()
    fresh_optimizer = service.create_training_client_from_state(path).result()
    for client in (training, resumed, fresh_optimizer):
        _train(client, data, steps=2)
    original = logprobs(training.forward(data, "cross_entropy").result())
    same = logprobs(resumed.forward(data, "cross_entropy").result())
    different = logprobs(fresh_optimizer.forward(data, "cross_entropy").result())
    for x, y in zip(original, same, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    gap = max(float(np.abs(x - z).max()) for x, z in zip(original, different, strict=True))
    assert gap > 1e-5, "Adam moments must matter: a fresh optimizer should diverge"


def test_load_state_into_running_client(service, make_client, tokenizer):
    data = qa_datums(tokenizer)
    trained = make_client(seed=1)
    _train(trained, data)
    path = trained.save_state(_name("state")).result().path
    other = make_client(seed=1)
    with pytest.warns(FutureWarning, match=r"load_state\*\(\) is deprecated"):
        loading = other.load_state(path)  # deprecated in tinker 0.38, still supported
    loading.result()
    a = logprobs(trained.forward(data, "cross_entropy").result())
    b = logprobs(other.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_sampler_checkpoint_matches_training_logprobs(service, training, tokenizer, target):
    data = qa_datums(tokenizer)
    _train(training, data)
    path = training.save_weights_for_sampler(_name("sampler")).result().path
    assert "/sampler_weights/" in path
    sampler = service.create_sampling_client(model_path=path).result()
    datum = data[0]
    tokens = [
        *datum.model_input.to_ints(),
        int(datum.loss_fn_inputs["target_tokens"].to_numpy()[-1]),
    ]
    sampled = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    trained = logprobs(training.forward([datum], "cross_entropy").result())[0]
    assert sampled[0] is None
    np.testing.assert_allclose(
        np.array(sampled[1:], dtype=np.float64), trained, atol=target.logprob_tolerance
    )


def test_duplicate_checkpoint_name_is_refused(training):
    name = _name("dup")
    training.save_state(name).result()
    with pytest.raises(Exception) as info:
        training.save_state(name).result()
    assert name in str(info.value)
    training.save_state(name, overwrite=True).result()  # explicitly allowed


def test_rest_client_lists_runs_and_checkpoints(service, training):
    state = training.save_state(_name("a")).result().path
    sampler = training.save_weights_for_sampler(_name("b")).result().path
    rest = tk.rest_client(service)
    listed = {
        c.tinker_path: c for c in rest.list_checkpoints(training.model_id).result().checkpoints
    }
    assert listed[state].checkpoint_type == "training"
    assert listed[sampler].checkpoint_type == "sampler"
    runs = rest.list_training_runs(limit=100).result().training_runs
    assert training.model_id in {r.training_run_id for r in runs}
    rest.delete_checkpoint_from_tinker_path(state).result()
    remaining = {
        c.tinker_path for c in rest.list_checkpoints(training.model_id).result().checkpoints
    }
    assert state not in remaining and sampler in remaining


def test_external_weights_urls_point_at_peft_files(service, training, target):
    if target.backend == "tinker":
        pytest.skip("downloading signed URLs is covered by the export tests")
    path = training.save_weights_external(_name("ext")).result().path
    assert "/external_weights/" in path
    urls = tk.rest_client(service).get_external_weights_urls(path).result()
    assert set(urls.urls) == {"adapter_model.safetensors", "adapter_config.json"}
    config = httpx.get(urls.urls["adapter_config.json"])
    assert config.status_code == 200 and config.json()["peft_type"] == "LORA"
    names = list(safetensors.numpy.load(httpx.get(urls.urls["adapter_model.safetensors"]).content))
    assert names and all(name.endswith(("lora_A.weight", "lora_B.weight")) for name in names)
