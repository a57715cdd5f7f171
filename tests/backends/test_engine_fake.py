"""A minimal engine behind the Engine protocol, driven through the whole SDK surface.

``FakeEngine`` + ``FakeFactory`` (between the ``--- the fake ---`` markers) are what a new
offline backend costs at least: a trainable bigram table with plain SGD. Everything
else (losses, validation, futures, checkpoints, sampling, the adapter config) comes from
``tinkerkit.backends``. The figure in ``backends/engine.py``'s docstring counts them.
"""

from __future__ import annotations

import numpy as np
import pytest
import tinker
from tinker import types

import tinkerkit as tk
from tests.engines import engine_of
from tinkerkit.backends import optimizers, registry
from tinkerkit.backends.engine import EngineState
from tinkerkit.data import shifted_datum
from tinkerkit.models import tokenizer as byte_tok
from tinkerkit.models.registry import ModelSpec

# --- the fake ---
KEY = "base_model.model.lm_head.lora_A.weight"


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def columns(item):
    return item.targets.reshape(len(item.tokens), -1)  # (T,) or (T, K) targets as (T, K)


class FakeForward:
    def __init__(self, engine, batch):
        self.engine, self.batch = engine, batch
        self.logp = [log_softmax(engine.table[item.tokens]) for item in batch]
        self.logprobs = [
            np.take_along_axis(lp, columns(item), 1).reshape(item.targets.shape).astype(np.float32)
            for lp, item in zip(self.logp, batch, strict=True)
        ]

    def backward(self, dlogprobs):
        for lp, item, d in zip(self.logp, self.batch, dlogprobs, strict=True):
            rows, d = np.arange(len(lp))[:, None], np.reshape(d, (len(lp), -1))
            g = -np.exp(lp) * d.sum(1, keepdims=True)
            np.add.at(g, (rows, columns(item)), d)
            np.add.at(self.engine.grad, item.tokens, g)


class FakeDecoder:
    def __init__(self, table, prompt, n):
        self.table, self.logits = table, np.tile(table[prompt[-1]], (n, 1))

    def step(self, tokens):
        self.logits = self.table[tokens]


class FakeEngine:
    def __init__(self, spec, lora, optimizer):
        self.spec, self.lora, self.optimizer_config = spec, lora, optimizer
        self.table = np.zeros((spec.vocab_size, spec.vocab_size), np.float32)
        self.grad, self.steps = np.zeros_like(self.table), 0

    def forward(self, batch, *, grad):
        return FakeForward(self, batch)

    def optim_step(self, params):
        norm = float(np.linalg.norm(self.grad))
        self.table -= params.learning_rate * self.grad
        self.grad[...], self.steps = 0.0, self.steps + 1
        return {"grad_norm": norm, "learning_rate": params.learning_rate}

    def decoder(self, prompt, n):
        return FakeDecoder(self.table, np.asarray(prompt), n)

    def next_token_logprobs(self, tokens):
        yield log_softmax(self.table[np.asarray(tokens)])

    def state(self):
        step = {"step": np.array([self.steps], np.int64)}
        return EngineState({KEY: self.table.copy()}, optimizers.tag_state("adamw", step))

    def load(self, state):
        self.table = state.weights[KEY].astype(np.float32)
        if state.optimizer is not None:
            self.steps = int(optimizers.check_state("adamw", state.optimizer)["step"][0])

    def snapshot(self):
        clone = FakeEngine(self.spec, self.lora, self.optimizer_config)
        clone.table = self.table.copy()
        return clone


class FakeFactory:
    name = "fake"

    def resolve(self, model):
        return ModelSpec(model, "fake", byte_tok.VOCAB_SIZE, 512)

    def known_models(self):
        return ["fake/bigram"]

    def tokenizer(self, spec):
        return byte_tok.byte_tokenizer()

    def stop_tokens(self, spec):
        return byte_tok.stop_token_ids()

    def create(self, spec, lora, optimizer=None):
        return FakeEngine(spec, lora, optimizer)  # new_engine has normalised it


# --- the fake ---


@pytest.fixture
def service(monkeypatch, tmp_path):
    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(registry._FACTORIES, "fake", f"{__name__}:FakeFactory")
    return tk.connect("fake")


def test_the_fake_trains_saves_loads_and_samples(service):
    tokens = [72, 101, 108, 108, 111]
    data = [shifted_datum(tokens, [1.0] * len(tokens))]
    training = service.create_lora_training_client(base_model="fake/bigram", rank=4).result()
    losses = []
    for _ in range(3):
        fb = training.forward_backward(data, "cross_entropy").result()
        losses.append(sum(float(o["logprobs"].to_numpy().sum()) for o in fb.loss_fn_outputs))
        training.optim_step(types.AdamParams(learning_rate=1.0)).result()
    assert losses[0] == pytest.approx(-4 * np.log(byte_tok.VOCAB_SIZE), rel=1e-5)
    assert losses[-1] > losses[0]  # the logprobs of the targets rise
    with pytest.raises(tinker.RequestFailedError, match="created with the AdamW optimizer"):
        training.optim_step(types.DimuonParams(learning_rate=1.0)).result()

    path = training.save_state("s").result().path
    resumed = service.create_training_client_from_state_with_optimizer(path).result()
    assert engine_of(service, resumed).steps == 3
    assert np.array_equal(engine_of(service, resumed).table, engine_of(service, training).table)

    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(tokens[:2])
    params = types.SamplingParams(max_tokens=3, temperature=0.0)
    sample = sampler.sample(prompt, num_samples=1, sampling_params=params).result()
    assert sample.sequences[0].tokens == [108, 108, 108]  # "l" follows "e", then "l"
