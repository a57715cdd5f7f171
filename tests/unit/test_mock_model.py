"""The mock model's hand-written backward pass against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types

from tinkerkit.backends.engine import EngineInput, LoraConfig
from tinkerkit.backends.mock.engine import MockFactory


def _engine(**lora):
    factory = MockFactory()
    return factory.create(factory.resolve("tinkerkit/tiny"), LoraConfig(rank=4, seed=0, **lora))


def _batch(rng, lengths=(7, 12, 3)):
    return [EngineInput(rng.integers(0, 256, n), rng.integers(0, 256, n)) for n in lengths]


@pytest.mark.parametrize(
    "options", [{}, {"train_unembed": False}, {"train_attn": False, "train_mlp": False}]
)
def test_gradient_matches_finite_differences(options):
    rng = np.random.default_rng(0)
    engine = _engine(**options)
    # float64 everywhere so the finite differences are meaningful
    engine.params = {
        k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float64) for k, v in engine.params.items()
    }
    engine.grads = {k: np.zeros_like(v) for k, v in engine.params.items()}
    engine.base = {k: v.astype(np.float64) for k, v in engine.base.items()}
    batch = _batch(rng)
    upstream = [rng.normal(0, 1, len(b.tokens)) for b in batch]
    engine.forward(batch, grad=True).backward(upstream)

    def objective():
        lps = engine.forward(batch, grad=False).logprobs
        return sum(float((u * lp).sum()) for u, lp in zip(upstream, lps, strict=True))

    assert engine.params, "some LoRA tensors must be trained"
    for key, param in engine.params.items():
        for _ in range(3):
            idx = tuple(int(rng.integers(0, s)) for s in param.shape)
            old = param[idx]
            param[idx] = old + 1e-5
            plus = objective()
            param[idx] = old - 1e-5
            minus = objective()
            param[idx] = old
            numeric = (plus - minus) / 2e-5
            assert engine.grads[key][idx] == pytest.approx(numeric, rel=1e-4, abs=1e-6), key


def test_padding_does_not_leak_between_datums():
    rng = np.random.default_rng(1)
    engine = _engine()
    batch = _batch(rng, (5, 40))
    together = engine.forward(batch, grad=False).logprobs
    alone = [engine.forward([b], grad=False).logprobs[0] for b in batch]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_predictions_depend_on_context():
    engine = _engine()
    a = engine.forward(
        [EngineInput(np.array([10, 20, 30, 65]), np.array([0, 0, 0, 66]))], grad=False
    )
    b = engine.forward(
        [EngineInput(np.array([90, 91, 30, 65]), np.array([0, 0, 0, 66]))], grad=False
    )
    assert abs(a.logprobs[0][-1] - b.logprobs[0][-1]) > 1e-3


def test_decoder_matches_full_forward():
    rng = np.random.default_rng(2)
    engine = _engine()
    engine.params = {
        k: v + rng.normal(0, 0.1, v.shape).astype(np.float32) for k, v in engine.params.items()
    }
    tokens = rng.integers(0, 256, 20)
    decoder = engine.decoder(tokens[:5], 1)
    for t in range(5, 20):
        full = engine.forward([EngineInput(tokens[:t], tokens[1 : t + 1])], grad=False)
        expected = full.logprobs[0][-1]
        logits = decoder.logits[0]
        got = logits[tokens[t]] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
        assert got == pytest.approx(expected, abs=1e-4)
        decoder.step(np.array([tokens[t]]))


def test_adam_matches_torch_adamw():
    torch = pytest.importorskip("torch")
    from tinkerkit.backends.mock.adam import Adam

    rng = np.random.default_rng(3)
    start = rng.normal(0, 1, (4, 3)).astype(np.float32)
    grads = [rng.normal(0, 1, (4, 3)).astype(np.float32) for _ in range(4)]
    hp = types.AdamParams(
        learning_rate=0.05, beta1=0.8, beta2=0.9, eps=1e-8, weight_decay=0.1, grad_clip_norm=1.5
    )
    ours = {"w": start.copy()}
    adam = Adam()
    ref = torch.nn.Parameter(torch.tensor(start))
    opt = torch.optim.AdamW([ref], lr=0.05, betas=(0.8, 0.9), eps=1e-8, weight_decay=0.1)
    for g in grads:
        adam.step(ours, {"w": g}, hp)
        ref.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([ref], 1.5)
        opt.step()
    np.testing.assert_allclose(ours["w"], ref.detach().numpy(), rtol=1e-5, atol=1e-6)
