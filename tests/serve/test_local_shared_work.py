"""Through the official SDK on ``local``: concurrent sample requests decode in shared rounds
with the numbers they get alone, and concurrent training clients train as they do alone."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types

import tinkerkit as tk

pytest.importorskip("torch")
pytest.importorskip("peft")

from tinkerkit.backends.local import generate

MODEL = "tinkerkit/tiny"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def rounds(monkeypatch) -> list[tuple[int, int]]:
    """After each lane round: (rows decoding, models the lane has seen)."""
    seen: list[tuple[int, int]] = []
    round_ = generate.Lane.round

    def counted(lane: generate.Lane) -> None:
        round_(lane)
        seen.append((len(lane._owners), len(lane._models)))

    monkeypatch.setattr(generate.Lane, "round", counted)
    return seen


def _assert_same_draws(alone, together) -> None:
    """Each response's sequences: the same tokens, logprobs within 1e-5."""
    for a, b in zip(alone, together, strict=True):
        assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
        for x, y in zip(a.sequences, b.sequences, strict=True):
            np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-5)


def test_concurrent_sample_requests_share_rounds_and_draw_as_alone(rounds):
    service = tk.connect("local")
    sampler = service.create_sampling_client(base_model=MODEL).result()
    prompts = [types.ModelInput.from_ints(list(f"Prompt {i}:".encode())) for i in range(6)]

    def params(i: int) -> types.SamplingParams:
        return types.SamplingParams(max_tokens=48, temperature=1.0, seed=i, stop=[])

    alone = [sampler.sample(p, 4, params(i)).result() for i, p in enumerate(prompts)]
    rounds.clear()
    futures = [sampler.sample(p, 4, params(i)) for i, p in enumerate(prompts)]
    together = [f.result() for f in futures]
    # 6 requests of 48 tokens each: one after another they would take 288 rounds.
    assert max(rows for rows, _ in rounds) > 4 and len(rounds) < 6 * 48
    _assert_same_draws(alone, together)


def _datum(seed: int) -> types.Datum:
    tokens = np.random.default_rng(seed).integers(0, 256, 24).tolist()
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 23},
    )


def _losses(service, clients: int, steps: int, together: bool) -> list[list[float]]:
    trainers = [
        service.create_lora_training_client(base_model=MODEL, rank=4, seed=c).result()
        for c in range(clients)
    ]
    out: list[list[float]] = [[] for _ in range(clients)]
    adam = types.AdamParams(learning_rate=5e-3)
    for _ in range(steps):
        data = [[_datum(100 * c)] for c in range(clients)]
        if together:
            fbs = [
                t.forward_backward(d, "cross_entropy") for t, d in zip(trainers, data, strict=True)
            ]
            opts = [t.optim_step(adam) for t in trainers]
            results = [f.result() for f in fbs]
            for o in opts:
                o.result()
        else:
            results = []
            for t, d in zip(trainers, data, strict=True):
                results.append(t.forward_backward(d, "cross_entropy").result())
                t.optim_step(adam).result()
        for c, r in enumerate(results):
            out[c].append(r.metrics["loss:sum"])
    return out


def test_concurrent_training_clients_train_as_they_do_alone():
    service = tk.connect("local")
    apart = _losses(service, clients=3, steps=4, together=False)
    together = _losses(service, clients=3, steps=4, together=True)
    np.testing.assert_allclose(together, apart, rtol=1e-5)
    assert all(run[-1] < run[0] for run in together)  # they learn


def test_samplers_of_different_adapters_decode_together_as_alone(rounds):
    service = tk.connect("local")
    samplers = []
    for c in range(2):
        trainer = service.create_lora_training_client(base_model=MODEL, rank=4, seed=c).result()
        trainer.forward_backward([_datum(c)], "cross_entropy").result()
        trainer.optim_step(types.AdamParams(learning_rate=0.05)).result()
        samplers.append(trainer.save_weights_and_get_sampling_client().result())
    prompt = types.ModelInput.from_ints(list(b"Once upon"))
    params = types.SamplingParams(max_tokens=40, temperature=1.0, seed=11, stop=[])
    alone = [s.sample(prompt, 3, params).result() for s in samplers]
    rounds.clear()
    futures = [s.sample(prompt, 3, params) for s in samplers]
    together = [f.result() for f in futures]
    assert max(models for _, models in rounds) == 2  # both adapters' rows shared a lane
    assert [s.tokens for s in alone[0].sequences] != [s.tokens for s in alone[1].sequences]
    _assert_same_draws(alone, together)


def test_a_model_that_cannot_batch_samples_through_the_decoder_alike(monkeypatch, rounds):
    """Where a model's cache cannot be shared (sliding windows, ...), requests decode one at
    a time through the numpy sampler: greedy answers and logprobs agree with the batch."""
    from tinkerkit.backends.local import engine as local_engine

    service = tk.connect("local")
    sampler = service.create_sampling_client(base_model=MODEL).result()
    prompt = types.ModelInput.from_ints(list(b"Tell me"))
    params = types.SamplingParams(max_tokens=24, temperature=0.0, stop=[])
    batched = sampler.sample(prompt, 2, params, include_prompt_logprobs=True).result()
    monkeypatch.setattr(local_engine, "_BATCHABLE", {})
    monkeypatch.setattr(local_engine, "batchable", lambda lm, device: False)
    assert rounds  # the first request went through a lane
    rounds.clear()  # the first request's last round may be counted after its answer came
    alone = sampler.sample(prompt, 2, params, include_prompt_logprobs=True).result()
    assert not [r for r in rounds if r[0]]  # no lane decoded a row of this request
    _assert_same_draws([alone], [batched])
    np.testing.assert_allclose(alone.prompt_logprobs[1:], batched.prompt_logprobs[1:], atol=1e-6)
