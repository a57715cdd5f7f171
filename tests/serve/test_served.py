"""Unmodified ``tinker.ServiceClient`` against ``tinkerkit serve`` on the mock backend."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import pytest
import tinker
from tinker import types

from tests.serve.helpers import PROBE, datum, probe_logprobs, text_datum
from tinkerkit.server import serve
from tinkerkit.server.runner import check_host

MODEL = "tinkerkit/tiny"
DATA = [text_datum(t) for t in ("Hello there.", "General Kenobi!", "You are a bold one.")]


def _client(official, seed: int = 0):
    return official.create_lora_training_client(base_model=MODEL, rank=8, seed=seed).result()


def test_pipelined_training_lowers_the_loss(official):
    training = _client(official)
    futures = []
    for _ in range(20):
        futures.append(training.forward_backward(DATA, "cross_entropy"))
        training.optim_step(types.AdamParams(learning_rate=1e-2))
    losses = [f.result().metrics["loss:sum"] for f in futures]
    assert losses[-1] < 0.5 * losses[0], losses


def test_accumulation_equals_one_call_on_the_union(official):
    split, union = _client(official, seed=3), _client(official, seed=3)
    np.testing.assert_array_equal(probe_logprobs(split), probe_logprobs(union))
    split.forward_backward(DATA[:1], "cross_entropy")
    split.forward_backward(DATA[1:], "cross_entropy")
    split.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    union.forward_backward(DATA, "cross_entropy")
    union.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    np.testing.assert_allclose(probe_logprobs(split), probe_logprobs(union), atol=1e-5)


def test_save_state_and_restore_give_identical_logprobs(official):
    training = _client(official)
    training.forward_backward(DATA, "cross_entropy")
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    path = training.save_state("served-state").result().path
    assert path.startswith(f"tinker://{training.model_id}/weights/")
    restored = official.create_training_client_from_state(path).result()
    np.testing.assert_array_equal(probe_logprobs(training), probe_logprobs(restored))


def test_sampling_is_greedy_deterministic_with_logprobs(official):
    training = _client(official)
    for _ in range(3):
        training.forward_backward(DATA, "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=1e-2))
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(list(b"Hello"))
    params = types.SamplingParams(max_tokens=8, temperature=0.0)
    first = sampler.sample(prompt, 2, params).result()
    again = sampler.sample(prompt, 1, params).result()
    assert len(first.sequences) == 2
    assert first.sequences[0].tokens == first.sequences[1].tokens == again.sequences[0].tokens
    seq = first.sequences[0]
    assert seq.logprobs is not None and len(seq.logprobs) == len(seq.tokens)
    assert all(lp <= 0 for lp in seq.logprobs)
    # compute_logprobs scores the sampled continuation as sampling did.
    scored = sampler.compute_logprobs(
        types.ModelInput.from_ints(list(b"Hello") + seq.tokens)
    ).result()
    assert scored[0] is None
    np.testing.assert_allclose(scored[-len(seq.tokens) :], seq.logprobs, atol=1e-4)


def test_named_sampler_checkpoint(official):
    training = _client(official)
    path = training.save_weights_for_sampler("served-sampler").result().path
    sampler = official.create_sampling_client(model_path=path).result()
    out = sampler.sample(
        types.ModelInput.from_ints([72, 105]), 1, types.SamplingParams(max_tokens=3)
    ).result()
    assert len(out.sequences[0].tokens) <= 3


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (datum([1, 2, 10**6, 3]), ["1000000", "vocabulary", "data[0]"]),
        (
            types.Datum(
                model_input=types.ModelInput.from_ints([1, 2, 3]),
                loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0] * 4},
            ),
            ["weights", "(4,)", "data[0]"],
        ),
    ],
    ids=["out-of-vocab", "weights-length"],
)
def test_bad_datum_raises_the_sdk_error_with_our_message(official, bad, words):
    training = _client(official)
    with pytest.raises(tinker.RequestFailedError) as info:
        training.forward_backward([bad], "cross_entropy").result()
    for word in words:
        assert word in str(info.value)
    assert info.value.category == types.RequestErrorCategory.User
    # The client keeps working.
    out = training.forward_backward(DATA, "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()


def test_unknown_base_model_names_what_exists(official):
    with pytest.raises(tinker.RequestFailedError) as info:
        official.create_lora_training_client(base_model="no-such/model-7B").result()
    assert "no-such/model-7B" in str(info.value) and MODEL in str(info.value)


def test_unknown_model_id_is_not_found(server):
    response = httpx.post(
        f"{server.base_url}/api/v1/optim_step",
        headers={"X-API-Key": server.api_key},
        json={"model_id": "nope", "seq_id": 1, "adam_params": {"learning_rate": 0.1}},
    )
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_requests_without_the_key_are_refused(server):
    assert httpx.get(f"{server.base_url}/api/v1/get_server_capabilities").status_code == 401
    with pytest.raises(tinker.AuthenticationError):
        wrong = tinker.ServiceClient(base_url=server.base_url, api_key="tml-wrong-key-000000")
        wrong.create_lora_training_client(base_model=MODEL).result()
    assert httpx.get(f"{server.base_url}/api/v1/healthz").json() == {"status": "ok"}


def test_unknown_endpoint_names_itself(server):
    response = httpx.post(
        f"{server.base_url}/api/v1/create_custom_loss",
        headers={"X-API-Key": server.api_key},
        json={},
    )
    assert response.status_code == 404
    # The path is quoted (repr): a path with control characters cannot break the message.
    assert "POST '/api/v1/create_custom_loss' is not supported" in response.json()["detail"]


def test_download_urls_need_a_valid_signature(official, server):
    training = _client(official)
    path = training.save_weights_external("dl").result().path
    urls = tinker.RestClient(base_url=server.base_url, api_key=server.api_key)
    url = urls.get_external_weights_urls(path).result().urls["adapter_config.json"]
    assert httpx.get(url).json()  # a JSON adapter config, no API key needed
    forged = url.replace("/files/", "/files/1-00", 1)
    assert httpx.get(forged).status_code == 403


def test_rest_listing_and_deletion(official, server):
    training = _client(official)
    path = training.save_state("to-delete").result().path
    rest = tinker.RestClient(base_url=server.base_url, api_key=server.api_key)
    run = rest.get_training_run(training.model_id).result()
    assert run.base_model == MODEL
    listed = rest.list_checkpoints(training.model_id).result().checkpoints
    assert [c.tinker_path for c in listed] == [path]
    rest.delete_checkpoint_from_tinker_path(path).result()
    assert rest.list_checkpoints(training.model_id).result().checkpoints == []
    runs = rest.list_training_runs().result().training_runs
    assert training.model_id in {r.training_run_id for r in runs}


def test_non_loopback_hosts_are_refused():
    with pytest.raises(ValueError, match="loopback"):
        check_host("0.0.0.0")
    assert check_host("0.0.0.0", allow_remote=True) == "0.0.0.0"
    assert check_host("::1") == "::1"


def test_the_key_never_reaches_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    with serve("mock", log_level="debug") as running:
        official = tinker.ServiceClient(base_url=running.base_url, api_key=running.api_key)
        training = _client(official)
        training.forward([PROBE], "cross_entropy").result()
        assert running.api_key not in repr(running)
        official.close("success").result(timeout=10)
    assert any("/api/v1/forward_backward" in r.getMessage() for r in caplog.records)
    assert all(running.api_key not in r.getMessage() for r in caplog.records)


def test_sdk_get_tokenizer_works_offline(official, monkeypatch):
    """The SDK loads the tokenizer named by get_info: the server points it at a local folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    training = _client(official)
    tok = training.get_tokenizer()
    assert tok.encode("hi", add_special_tokens=False) == [104, 105]
    assert tok.decode(tok.encode("héllo", add_special_tokens=False)) == "héllo"
