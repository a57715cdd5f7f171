"""A failed request is never silent: unread failures and untrained steps warn.

The guide's Quick Start loop calls ``forward_backward`` without reading its future, on
datums without ``target_tokens``; every request fails and the run "succeeds" having
trained nothing. Ported with only ``tk.connect("mock")`` it must say so.
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest
from tinker import types

import tinkerkit as tk
import tinkerkit.testing
from tinkerkit.errors import UnretrievedFailureWarning, UntrainedStepWarning


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
        training_client.forward_backward(examples, loss_fn="cross_entropy")  # LINE-FB
        training_client.optim_step(types.AdamParams(learning_rate=1e-4))
    return training_client


def _line(marker: str) -> int:
    source = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(source, 1) if marker in text and "_line(" not in text)


def test_ported_quick_start_names_the_failing_request():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        training = _quick_start(tk.connect("mock"))
        # Requests run in order: once this one is done, every failure above has happened.
        training.save_state("flush").result()
        gc.collect()
    unread = [w for w in caught if issubclass(w.category, UnretrievedFailureWarning)]
    untrained = [w for w in caught if issubclass(w.category, UntrainedStepWarning)]
    # Ten failures, reported once (later ones like it are not repeated).
    assert len(unread) == 1, [str(w.message) for w in caught]
    message = str(unread[0].message)
    assert "forward_backward #1" in message
    assert "loss_fn_inputs is missing 'target_tokens'" in message
    assert unread[0].filename == __file__ and unread[0].lineno == _line("# LINE-FB")
    assert f"{__file__}:{_line('# LINE-FB')}" in message
    assert len(untrained) == 10
    assert "optim_step #1" in str(untrained[0].message)
    assert "forward_backward #1" in str(untrained[0].message)
    assert "trains on nothing" in str(untrained[0].message)


def test_a_read_failure_does_not_warn(tk_training_client):
    bad = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        future = tk_training_client.forward_backward([bad], "cross_entropy")
        with pytest.raises(tk.errors.InvalidDatumError):
            future.result()
        del future
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, tk.errors.TinkerkitWarning)]


def test_a_failure_dropped_before_it_happens_still_warns():
    service = tk.connect("mock", latency=0.05)
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
    bad = types.Datum(model_input=types.ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        training.forward([bad], "cross_entropy")  # dropped at once, fails 50 ms later
        training.save_state("later").result()
        gc.collect()
    unread = [w for w in caught if issubclass(w.category, UnretrievedFailureWarning)]
    assert len(unread) == 1 and "forward #1" in str(unread[0].message)


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
        with pytest.raises(tk.errors.InvalidDatumError):
            failed.result()
        assert ok.result().metrics["loss:sum"] > 0
    assert not [w for w in caught if issubclass(w.category, UntrainedStepWarning)]
