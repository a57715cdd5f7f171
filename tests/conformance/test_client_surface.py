"""The client surface as tinker 0.38 has it: types, futures, deprecations, lifecycle and the
custom-loss contract. Runs offline (mock, local) and served (the official SDK)."""

from __future__ import annotations

import concurrent.futures
import warnings

import numpy as np
import pytest
import tinker
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture
from tinker.lib.public_interfaces.backcompat_sampling_client_future import (
    BackcompatSamplingClientFuture,
)
from tinker.lib.public_interfaces.backcompat_training_client_future import (
    BackcompatTrainingClientFuture,
)

import tinkerkit as tk
from tests.conformance.helpers import logprobs, qa_datums, weights


def test_clients_and_futures_are_the_sdk_types(service, target, tokenizer):
    assert isinstance(service, tinker.ServiceClient)
    pending = service.create_lora_training_client(base_model=target.model, rank=4)
    assert isinstance(pending, BackcompatTrainingClientFuture) and isinstance(pending, APIFuture)
    training = pending.result()
    assert isinstance(training, tinker.TrainingClient)
    fb = training.forward_backward(qa_datums(tokenizer)[:1], "cross_entropy")
    assert isinstance(fb, APIFuture)
    sampler_future = training.save_weights_and_get_sampling_client()
    assert isinstance(sampler_future, BackcompatSamplingClientFuture)
    sampler = sampler_future.result()
    assert isinstance(sampler, tinker.SamplingClient)
    prompt = qa_datums(tokenizer)[0].model_input
    sample = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2))
    # The SDK's sample future is also a concurrent.futures.Future (back-compat).
    assert isinstance(sample, APIFuture) and isinstance(sample, concurrent.futures.Future)
    assert len(sample.result().sequences) == 1
    assert fb.result().metrics["loss:sum"] > 0


def test_deprecated_calls_warn_as_the_sdk_does(training, tokenizer):
    data = qa_datums(tokenizer)[:1]
    with pytest.warns(FutureWarning, match=r"forward_backward_async\(\) is deprecated"):
        coroutine = training.forward_backward_async(data, "cross_entropy")
    coroutine.close()
    with pytest.warns(FutureWarning, match=r"get_info_async\(\) is deprecated"):
        training.get_info_async().close()
    with pytest.warns(FutureWarning, match="Using the future as the SamplingClient"):
        training.save_weights_and_get_sampling_client().get_base_model()


def test_named_snapshot_is_deprecated_and_not_persisted(service, training, tokenizer):
    with pytest.warns(DeprecationWarning, match="'name' parameter"):
        sampler = training.save_weights_and_get_sampling_client(name="keep-me").result()
    prompt = qa_datums(tokenizer)[0].model_input
    assert sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result().sequences
    listed = tk.rest_client(service).list_checkpoints(training.model_id).result().checkpoints
    assert [c.tinker_path for c in listed if "keep-me" in c.tinker_path] == []


def test_sampling_client_kind_is_validated_and_inflight_follows_new_weights(training, tokenizer):
    with pytest.raises(ValueError):
        training.save_weights_and_get_sampling_client(kind="bogus").result()  # type: ignore[arg-type]
    data = qa_datums(tokenizer)
    prompt = types.ModelInput.from_ints(
        [*data[0].model_input.to_ints(), int(data[0].loss_fn_inputs["target_tokens"].tolist()[-1])]
    )
    inflight = training.save_weights_and_get_sampling_client(kind="inflight").result()
    snapshot = training.save_weights_and_get_sampling_client().result()
    before = inflight.compute_logprobs(prompt).result()
    for _ in range(3):
        training.forward_backward(data, "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=1e-2))
    # A later inflight save publishes new weights to every inflight client.
    training.save_weights_and_get_sampling_client(kind="inflight").result()
    after = inflight.compute_logprobs(prompt).result()
    frozen = snapshot.compute_logprobs(prompt).result()
    assert after[1:] != before[1:]
    assert frozen == before


def test_service_client_is_a_context_manager_and_closes(fresh_service, target):
    service = fresh_service
    with service as entered:
        assert entered is service
        training = service.create_lora_training_client(base_model=target.model, rank=4).result()
        assert training.model_id
    with pytest.raises(RuntimeError, match="closed"):
        service.create_lora_training_client(base_model=target.model, rank=4)
    assert service.close("success").result() is None  # closing twice is harmless


# --- custom losses -------------------------------------------------------------------------


def test_custom_loss_metrics_and_outputs_match_the_sdk_contract(training, tokenizer):
    torch = pytest.importorskip("torch")
    data = qa_datums(tokenizer)

    def squared(batch, lps):
        loss = sum((lp * lp).sum() for lp in lps)
        return loss, {"custom/sq:sum": float(loss.detach())}

    current = logprobs(training.forward(data, "cross_entropy").result())
    out = training.forward_backward_custom(data, squared).result()
    expected = sum(float((lp.astype(np.float32) ** 2).sum()) for lp in current)
    assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-5)
    assert out.metrics["custom/sq:sum"] == pytest.approx(expected, rel=1e-5)
    # The surrogate is cross_entropy with weights = -dC/dlp = -2 lp, so it sums 2 lp².
    assert out.metrics["surrogate_loss:sum"] == pytest.approx(2 * expected, rel=1e-4)
    for lp, o in zip(current, out.loss_fn_outputs, strict=True):
        np.testing.assert_allclose(o["logprobs"].to_numpy(), lp, rtol=1e-6)
    del torch


def test_custom_loss_without_target_tokens_fails_at_the_call_and_leaves_the_client(
    training, tokenizer
):
    pytest.importorskip("torch")
    data = qa_datums(tokenizer)
    bare = types.Datum(
        model_input=data[0].model_input, loss_fn_inputs={"weights": weights(data[0])}
    )
    with pytest.raises(ValueError, match="target_tokens"):
        training.forward_backward_custom([bare], lambda b, lps: (sum(x.sum() for x in lps), {}))
    assert training.forward(data, "cross_entropy").result().metrics["loss:sum"] > 0


def test_logprobs_without_gradient_are_a_value_error_then_the_client_stops(training, tokenizer):
    torch = pytest.importorskip("torch")
    data = qa_datums(tokenizer)

    def detached(batch, lps):
        return torch.tensor(1.0, requires_grad=True), {}

    with pytest.raises(ValueError, match="No gradient computed"):
        training.forward_backward_custom(data, detached).result()
    with pytest.raises(RuntimeError, match="poisoned"):
        training.forward(data, "cross_entropy").result()


def test_custom_loss_handles_run_per_datum(service, training, tokenizer):
    pytest.importorskip("torch")
    data = qa_datums(tokenizer)

    def neg_ll(logprobs, weights):
        loss = -(logprobs * weights).sum()
        return loss, {"custom/neg_ll:sum": loss}

    handle = service.create_custom_loss(neg_ll, {"logprobs": 1, "weights": 1}).result()
    reference = training.forward(data, "cross_entropy").result().metrics["loss:sum"]
    out = training.forward_backward_custom(data, handle).result()
    assert out.metrics["loss:sum"] == pytest.approx(reference, rel=1e-5)
    assert out.metrics["custom/neg_ll:sum"] == pytest.approx(reference, rel=1e-5)
    with pytest.raises(ValueError, match="has no loss_fn_inputs"):
        bare = types.Datum(
            model_input=data[0].model_input,
            loss_fn_inputs={"target_tokens": data[0].loss_fn_inputs["target_tokens"]},
        )
        training.forward_backward_custom([bare], handle)


def test_loss_type_input_is_deprecated(training, tokenizer):
    pytest.importorskip("torch")
    data = qa_datums(tokenizer)[:1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = training.forward_backward_custom(
            data, lambda b, lps: (-sum(x.sum() for x in lps), {}), loss_type_input="logprobs"
        )
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert out.result().metrics["loss:sum"] > 0
    with pytest.raises(ValueError, match="Unsupported loss_type_input"):
        training.forward_backward_custom(data, lambda b, lps: (0, {}), loss_type_input="logits")  # type: ignore[arg-type]
