"""Served, the server's log says what the SDK user may never read: failed requests, and
optim_steps that trained on nothing (the guide's Quick Start loop, unmodified SDK)."""

from __future__ import annotations

import logging

from tinker import types

from tests.serve.helpers import text_datum


def test_quick_start_failures_reach_the_server_log(official, caplog):
    training = official.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
    full = text_datum("What is Python? Python is a programming language.")
    tokens = full.model_input.to_ints()
    # The guide's datum: weights, no target_tokens.
    broken = types.Datum(
        model_input=types.ModelInput.from_ints(tokens),
        loss_fn_inputs={"weights": [1.0] * len(tokens)},
    )
    with caplog.at_level(logging.WARNING, logger="tinkerkit.server"):
        for _ in range(3):
            training.forward_backward([broken], loss_fn="cross_entropy")
            training.optim_step(types.AdamParams(learning_rate=1e-4))
        training.save_state("flush").result()
    failures = [r.getMessage() for r in caplog.records if "request" in r.getMessage()]
    untrained = [r.getMessage() for r in caplog.records if "UntrainedStepWarning" in r.getMessage()]
    assert len([m for m in failures if m.startswith("forward_backward request")]) == 1, failures
    assert "loss_fn_inputs is missing 'target_tokens'" in failures[0]
    assert len(untrained) == 3 and "trains on nothing" in untrained[0]
