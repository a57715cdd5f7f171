"""The optimizer is fixed at creation: AdamW by default, Dimuon when asked — never another."""

from __future__ import annotations

import pytest
import tinker
from tinker import types

from tests.conformance.helpers import qa_datums


def _dimuon_client(service, target, seed: int = 0):
    return service.create_lora_training_client(
        base_model=target.model, rank=8, seed=seed, optimizer=types.DimuonOptimizerConfig()
    ).result()


def test_default_optimizer_is_adamw(training):
    assert training.get_info().optimizer_config.type == "adamw"


def test_dimuon_client_trains_with_dimuon(service, target, tokenizer):
    training = _dimuon_client(service, target)
    assert training.get_info().optimizer_config.type == "dimuon"
    data = qa_datums(tokenizer)
    first = training.forward_backward(data, "cross_entropy")
    step = training.optim_step(types.DimuonParams(learning_rate=0.05))
    for _ in range(11):
        training.forward_backward(data, "cross_entropy")
        training.optim_step(types.DimuonParams(learning_rate=0.05))
    last = training.forward(data, "cross_entropy").result()
    assert step.result() is not None
    assert last.metrics["loss:sum"] < 0.6 * first.result().metrics["loss:sum"]


def test_params_of_the_other_optimizer_are_refused(service, target, tokenizer, training):
    data = qa_datums(tokenizer)
    dimuon = _dimuon_client(service, target)
    dimuon.forward_backward(data, "cross_entropy")
    with pytest.raises(tinker.RequestFailedError, match="DimuonParams"):
        dimuon.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    training.forward_backward(data, "cross_entropy")
    with pytest.raises(tinker.RequestFailedError, match="AdamParams"):
        training.optim_step(types.DimuonParams(learning_rate=1e-3)).result()


def test_resume_with_optimizer_keeps_dimuon(service, target, tokenizer):
    data = qa_datums(tokenizer)
    training = _dimuon_client(service, target)
    training.forward_backward(data, "cross_entropy")
    training.optim_step(types.DimuonParams(learning_rate=0.02)).result()
    path = training.save_state("dimuon-state").result().path
    resumed = service.create_training_client_from_state_with_optimizer(path).result()
    assert resumed.get_info().optimizer_config.type == "dimuon"
    # Both continue identically: same weights, same momentum, same optimizer.
    outs = []
    for client in (training, resumed):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(types.DimuonParams(learning_rate=0.02))
        outs.append(client.forward(data, "cross_entropy").result().metrics["loss:sum"])
    assert outs[0] == pytest.approx(outs[1], rel=1e-6)
    weights_only = service.create_training_client_from_state(path).result()
    assert weights_only.get_info().optimizer_config.type == "adamw"
