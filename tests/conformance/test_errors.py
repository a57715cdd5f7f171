"""Bad requests fail with typed errors that say what to change; the client keeps working."""

from __future__ import annotations

import pytest
from tinker import RequestFailedError, types

import tinkerkit as tk
from tests.conformance.helpers import qa_datums


def _still_works(training, tokenizer):
    out = training.forward_backward(qa_datums(tokenizer), "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()


def _bad(tokens, **inputs):
    return types.Datum(model_input=types.ModelInput.from_ints(tokens), loss_fn_inputs=inputs)


@pytest.mark.parametrize(
    ("datum", "words"),
    [
        (
            _bad([1, 2, 3], target_tokens=[2, 3, 4], weights=[1.0, 1.0, 1.0, 1.0]),
            ["weights", "(4,)", "3"],
        ),
        (_bad([1, 2, 3], weights=[1.0, 1.0, 1.0]), ["target_tokens", "missing"]),
        (
            _bad([1, 2, 10**6], target_tokens=[2, 3, 4], weights=[1.0, 1.0, 1.0]),
            ["1000000", "vocabulary"],
        ),
        (
            _bad([1, 2, 3], target_tokens=[2, 3, -1], weights=[1.0, 1.0, 1.0]),
            ["-1", "target_tokens"],
        ),
    ],
    ids=["weights-too-long", "no-target-tokens", "token-out-of-vocab", "negative-target"],
)
def test_bad_datum_fails_its_future_only(training, tokenizer, target, datum, words):
    future = training.forward_backward([datum], "cross_entropy")
    with pytest.raises(RequestFailedError) as info:
        future.result()
    if target.backend != "tinker":
        message = str(info.value)
        for word in words:
            assert word in message, message
        assert "data[0]" in message
    _still_works(training, tokenizer)


def test_unknown_loss(training, tokenizer, target):
    with pytest.raises(RequestFailedError) as info:
        training.forward_backward(qa_datums(tokenizer), "bradley_terry").result()
    if target.backend != "tinker":
        assert "bradley_terry" in str(info.value) and "forward_backward_custom" in str(info.value)
    _still_works(training, tokenizer)


def test_unknown_model(service, target):
    with pytest.raises(Exception) as info:
        service.create_lora_training_client(base_model="no-such/model-7B").result()
    assert "no-such/model-7B" in str(info.value)
    if target.backend != "tinker":
        assert target.model in str(info.value)  # lists what is available


def test_sequence_longer_than_context(service, training, tokenizer, target):
    if target.backend == "tinker":
        pytest.skip("the service's context is too long to exceed cheaply")
    rest = tk.rest_client(service)
    models = rest.get_server_capabilities().result().supported_models
    context = next(m.max_context_length for m in models if m.model_name == target.model)
    length = context + 1
    datum = _bad([1] * length, target_tokens=[1] * length, weights=[1.0] * length)
    with pytest.raises(RequestFailedError, match="context"):
        training.forward([datum], "cross_entropy").result()
    _still_works(training, tokenizer)


def test_string_prompt_is_refused_before_any_request(training, tokenizer, target):
    """The guide passes a string prompt: the SDK refuses it itself (tk.sample_text takes
    strings and chats)."""
    sampler = training.save_weights_and_get_sampling_client().result()
    with pytest.raises(AttributeError, match="chunks"):
        sampler.sample(
            prompt="What is ML?", num_samples=1, sampling_params=types.SamplingParams(max_tokens=5)
        ).result()


def test_empty_data_is_refused_at_submission(training):
    with pytest.raises(ValueError, match="No data"):
        training.forward_backward([], "cross_entropy")
