"""A failed request is never silent: the service logs it, and a step it left untrained warns.

The guide's Quick Start loop calls ``forward_backward`` without reading its future, on
datums without ``target_tokens``; every request fails and the run "succeeds" having
trained nothing. Ported with only ``tk.connect("mock")`` it must say so, in the user's
own process: the service knows what each optim_step applied.
"""

from __future__ import annotations

import gc
import logging
import warnings

import pytest
import tinker
from tinker import types

import tinkerkit as tk
import tinkerkit.testing
from tinkerkit.errors import UntrainedStepWarning
from tinkerkit.server.state import FutureTable, done, failed


def _quick_start(service):
    """The guide's "Your First Training Loop", unchanged but for the service."""
    service_client = service
    training_client = service_client.create_lora_training_client(
        base_model="meta-llama/Llama-3.2-1B",
        rank=32,
    ).result()
    tokenizer = training_client.get_tokenizer()

    def create_datum(prompt: str, completion: str) -> types.Datum:
        prompt_tokens = tokenizer.encode(prompt)
        completion_tokens = tokenizer.encode(completion)
        return types.Datum(
            model_input=types.ModelInput(
                chunks=[types.EncodedTextChunk(tokens=prompt_tokens + completion_tokens)]
            ),
            loss_fn_inputs={"weights": [0.0] * len(prompt_tokens) + [1.0] * len(completion_tokens)},
        )

    examples = [
        create_datum("What is Python?", "Python is a programming language."),
        create_datum("Explain recursion.", "Recursion is when a function calls itself."),
    ]
    for _epoch in range(10):
        training_client.forward_backward(examples, loss_fn="cross_entropy")
        training_client.optim_step(types.AdamParams(learning_rate=1e-4))
    return training_client


def test_ported_quick_start_names_the_failing_request(caplog):
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.WARNING, logger="tinkerkit.server"),
    ):
        warnings.simplefilter("always")
        training = _quick_start(tk.connect("mock"))
        # Requests run in order: once this one is done, every failure above has happened.
        training.save_state("flush").result()
    untrained = [w for w in caught if issubclass(w.category, UntrainedStepWarning)]
    # Every step trained on nothing, and each says which request failed and why.
    assert len(untrained) == 10, [str(w.message) for w in caught]
    first = str(untrained[0].message)
    assert "optim_step #1 on TrainingClient" in first and training.model_id in first
    assert "forward_backward #1" in first and "trains on nothing" in first
    assert "loss_fn_inputs is missing 'target_tokens'" in first
    assert "optim_step #10" in str(untrained[-1].message)
    # The failure itself is logged once, naming the request, in this process's log.
    failures = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(failures) == 1 and "forward_backward request" in failures[0]
    assert "missing 'target_tokens'" in failures[0]


def test_a_read_failure_does_not_warn(tk_training_client):
    bad = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        future = tk_training_client.forward_backward([bad], "cross_entropy")
        with pytest.raises(tinker.RequestFailedError, match="target_tokens"):
            future.result()
        del future
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, tk.errors.TinkerkitWarning)]


def test_a_failed_result_nobody_retrieves_warns_when_it_is_dropped():
    warned = []
    table = FutureTable(ttl_s=0.0, on_unretrieved_failure=lambda e, exc: warned.append((e, exc)))
    lost = table.add(failed(ValueError("bad datum")), "forward_backward", owner="mock-1")
    table.add(done(1), "optim_step", owner="mock-1")  # a result, not a failure
    read = table.add(failed(ValueError("read")), "forward", owner="mock-1")
    table.forget(read.request_id)
    table._last_sweep = 0.0
    table.add(done(2), "sample")  # adding sweeps what is past its time
    assert [(e.request_id, str(exc)) for e, exc in warned] == [(lost.request_id, "bad datum")]
    assert table.get(lost.request_id) is None


def test_a_successful_step_after_a_failure_does_not_warn(tk_training_client):
    tok = tk_training_client.get_tokenizer()
    good = tk.testing.prompt_completion_datum(tok, "Q: hi\nA:", " yo")
    bad = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failed = tk_training_client.forward_backward([bad], "cross_entropy")
        ok = tk_training_client.forward_backward([good], "cross_entropy")
        step = tk_training_client.optim_step(types.AdamParams(learning_rate=1e-3))
        step.result()
        with pytest.raises(tinker.RequestFailedError):
            failed.result()
        assert ok.result().metrics["loss:sum"] > 0
    assert not [w for w in caught if issubclass(w.category, UntrainedStepWarning)]
