"""The mock model: its hand-written backward pass against finite differences, for the
dense head (byte vocabulary) and the factorised head (real-tokenizer vocabularies)."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types

from tinkerkit.backends.engine import EngineInput, EngineState, LoraConfig, load
from tinkerkit.backends.mock import head, model
from tinkerkit.backends.mock.engine import MockEngine, MockFactory
from tinkerkit.models.registry import ModelSpec

# Just above the dense threshold, and not a square: the last cluster is partial
SMALL_FACTORISED = 5000
QWEN3_VOCAB = 151_936
QWEN35_VOCAB = 248_320


def _engine(vocab=None, **lora):
    config = LoraConfig(rank=4, seed=0, **lora)
    if vocab is None:
        factory = MockFactory()
        return factory.create(factory.resolve("tinkerkit/tiny"), config)
    spec = ModelSpec("stand-in", "tinkerkit-mock", vocab, 2048)
    return MockEngine(spec, LoraConfig(rank=4, seed=0, alpha=32.0, **lora))


def _batch(rng, lengths=(7, 12, 3), vocab=256):
    return [EngineInput(rng.integers(0, vocab, n), rng.integers(0, vocab, n)) for n in lengths]


def _k_batch(rng, vocab=256):
    """(T, K) targets with repeated ids in a row (as padding makes them), beside a 1-D datum."""
    targets = rng.integers(0, vocab, (9, 3))
    targets[::2, 2] = targets[::2, 0]
    return [
        EngineInput(rng.integers(0, vocab, 9), targets),
        EngineInput(rng.integers(0, vocab, 5), rng.integers(0, vocab, 5)),
    ]


def _check_gradients(engine, batch, rng):
    # float64 everywhere so the finite differences are meaningful
    engine.params = {
        k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float64) for k, v in engine.params.items()
    }
    engine.grads = {k: np.zeros_like(v) for k, v in engine.params.items()}
    engine.base = {k: v.astype(np.float64) for k, v in engine.base.items()}
    upstream = [rng.normal(0, 1, b.targets.shape) for b in batch]
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


@pytest.mark.parametrize("vocab", [None, SMALL_FACTORISED], ids=["dense", "factorised"])
@pytest.mark.parametrize(
    "options", [{}, {"train_unembed": False}, {"train_attn": False, "train_mlp": False}]
)
def test_gradient_matches_finite_differences(options, vocab):
    rng = np.random.default_rng(0)
    _check_gradients(_engine(vocab, **options), _batch(rng, vocab=vocab or 256), rng)


@pytest.mark.parametrize("vocab", [None, SMALL_FACTORISED], ids=["dense", "factorised"])
def test_gradient_of_k_targets_matches_finite_differences(vocab):
    rng = np.random.default_rng(4)
    _check_gradients(_engine(vocab), _k_batch(rng, vocab or 256), rng)


def test_gradient_at_a_real_vocabulary():
    rng = np.random.default_rng(5)
    _check_gradients(_engine(QWEN3_VOCAB, train_attn=False), _batch(rng, (6, 4), QWEN3_VOCAB), rng)


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


def test_dense_head_up_to_the_threshold_factorised_above():
    dense = model.base_weights("tinkerkit/tiny", head.FACTORISED_ABOVE)
    factorised = model.base_weights("tinkerkit/tiny", head.FACTORISED_ABOVE + 1)
    assert dense["W_head"].shape == (model.HIDDEN, head.FACTORISED_ABOVE)
    clusters, width = head.grid(head.FACTORISED_ABOVE + 1)
    assert clusters * width >= head.FACTORISED_ABOVE + 1 > (clusters - 1) * width
    assert factorised["W_head"].shape == (model.HIDDEN, clusters + width)
    assert head.grid(QWEN3_VOCAB) == (390, 390)
    assert head.grid(QWEN35_VOCAB) == (498, 499)


def test_byte_vocabulary_numbers_are_unchanged():
    """The dense head's numbers, recorded before the factorised head was added."""
    engine = _engine()
    tokens = np.arange(40, 60)
    lps = engine.forward([EngineInput(tokens, tokens + 1)], grad=False).logprobs[0]
    assert float(lps.sum()) == pytest.approx(-123.31072998046875, rel=1e-6)
    assert float(lps[7]) == pytest.approx(-5.432402610778809, rel=1e-6)


@pytest.mark.parametrize("vocab", [SMALL_FACTORISED, QWEN3_VOCAB, QWEN35_VOCAB])
def test_factorised_distribution_is_exact_and_matches_training(vocab):
    rng = np.random.default_rng(6)
    engine = _engine(vocab)
    engine.params = {
        k: v + rng.normal(0, 0.1, v.shape).astype(np.float32) for k, v in engine.params.items()
    }
    tokens = rng.integers(0, vocab, 24)
    tokens[5] = vocab - 1  # the partial last cluster
    rows = np.concatenate(list(engine.next_token_logprobs(tokens)))
    assert rows.shape == (24, vocab) and rows.dtype == np.float32
    np.testing.assert_allclose(np.exp(rows.astype(np.float64)).sum(axis=1), 1.0, atol=1e-5)
    at = np.arange(23)
    trained = engine.forward([EngineInput(tokens[:-1], tokens[1:])], grad=False).logprobs[0]
    np.testing.assert_allclose(trained, rows[at, tokens[1:]], atol=1e-5)
    k_targets = rng.integers(0, vocab, (23, 4))
    k_targets[:, 3] = vocab - 1
    k_lps = engine.forward([EngineInput(tokens[:-1], k_targets)], grad=False).logprobs[0]
    np.testing.assert_allclose(k_lps, np.take_along_axis(rows[:23], k_targets, 1), atol=1e-5)


def test_factorised_decoder_matches_full_forward():
    rng = np.random.default_rng(7)
    engine = _engine(QWEN3_VOCAB)
    engine.params = {
        k: v + rng.normal(0, 0.1, v.shape).astype(np.float32) for k, v in engine.params.items()
    }
    tokens = rng.integers(0, QWEN3_VOCAB, 12)
    full = engine.forward([EngineInput(tokens[:-1], tokens[1:])], grad=False).logprobs[0]
    decoder = engine.decoder(tokens[:4], 2)
    for t in range(4, 12):
        logits = decoder.logits
        assert logits.shape == (2, QWEN3_VOCAB)
        logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        assert logprobs[1, tokens[t]] == pytest.approx(full[t - 1], abs=1e-5)
        decoder.step(np.array([tokens[t]] * 2))


def test_large_vocabulary_is_small_and_scored_in_blocks():
    weights = model.base_weights("tinkerkit/tiny", QWEN35_VOCAB)
    assert model.base_weights("tinkerkit/tiny", QWEN35_VOCAB) is weights  # cached
    buffers = {id(a.base if a.base is not None else a): a for a in weights.values()}
    held = sum((a.base if a.base is not None else a).nbytes for a in buffers.values())
    assert held < 100 * 2**20
    engine = _engine(QWEN35_VOCAB)
    blocks = list(engine.next_token_logprobs(np.arange(100)))
    assert sum(len(b) for b in blocks) == 100
    assert max(b.nbytes for b in blocks) <= 64 * 2**20


def test_head_lora_learns_specific_tokens_at_a_real_vocabulary():
    """LoRA on the head alone memorises a sequence of arbitrary ids (not just clusters)."""
    rng = np.random.default_rng(8)
    engine = _engine(QWEN3_VOCAB, train_attn=False, train_mlp=False)
    tokens = rng.integers(0, QWEN3_VOCAB, 13)
    batch = [EngineInput(tokens[:-1], tokens[1:])]
    for _ in range(25):
        engine.forward(batch, grad=True).backward([np.full(12, -1.0)])
        engine.optim_step(types.AdamParams(learning_rate=1e-2))
    probs = np.exp(engine.forward(batch, grad=False).logprobs[0])
    assert probs.min() > 0.5


def test_cluster_normalisers_survive_logits_wider_than_exp_range():
    """The matmul of exponentials underflows when slot logits spread over ~700 nats; those
    rows fall back to a cell-by-cell log-sum-exp."""
    bias = model.base_weights("tinkerkit/tiny", QWEN35_VOCAB)["b_tok"]
    slots = np.zeros((2, bias.shape[1]))
    slots[0] = -2000.0
    slots[0, -1] = 0.0  # the widest slot is one the partial last cluster lacks
    expected = np.logaddexp.reduce(slots[:, None, :] + bias.astype(np.float64), axis=2)
    np.testing.assert_allclose(
        head._slot_normalisers(slots, head.slot_bias(bias, 1.0)), expected, rtol=1e-12
    )


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_direct_draw_is_the_exact_distribution(temperature):
    """The factorised decoder's cluster-then-slot draw samples softmax(log p / T) exactly:
    its counts over 30k draws match the full distribution (within 5 sigma on every token
    with p >= 1e-3, and by a chi-square test over 200 groups), and each drawn token's
    logprob is log p at temperature 1 to 1e-9."""
    engine = _engine(SMALL_FACTORISED, train_attn=False)
    engine.params = {k: v + 0.3 for k, v in engine.params.items()}  # a non-zero LoRA
    load(engine, EngineState(engine.params))
    rng = np.random.default_rng(4)
    prompt = rng.integers(0, SMALL_FACTORISED, 9)
    n = 30_000
    dec = engine.decoder(prompt, n)
    assert isinstance(dec, model.FactorisedDecoder)
    full = engine.decoder(prompt, 1).logits[0]  # normalised log p (the head's exact logprobs)
    target = full / temperature
    target = np.exp(target - np.logaddexp.reduce(target))
    tokens, _ = dec.draw(temperature, np.random.default_rng(0))
    few = engine.decoder(prompt, 500)  # (float32 matmuls differ by row at ~1e-4)
    few_tokens, logprobs = few.draw(temperature, np.random.default_rng(1))
    at = np.arange(500)
    np.testing.assert_allclose(logprobs, few.logits[at, few_tokens], rtol=0, atol=1e-9)
    counts = np.bincount(tokens, minlength=SMALL_FACTORISED)
    likely = target >= 1e-3
    sigma = np.sqrt(n * target[likely] * (1 - target[likely]))
    assert np.all(np.abs(counts[likely] - n * target[likely]) < 5 * sigma)
    # chi-square over 200 groups of about equal probability (199 dof: mean 199, sd 20)
    order = np.argsort(target)
    group = np.minimum((np.cumsum(target[order]) * 200).astype(int), 199)
    expected = np.bincount(group, weights=n * target[order])
    observed = np.bincount(group, weights=counts[order])
    chi2 = float((((observed - expected) ** 2)[expected > 0] / expected[expected > 0]).sum())
    assert chi2 < 199 + 6 * 20
    # the same seed draws the same tokens; the sampler uses the direct draw
    again, _ = engine.decoder(prompt, n).draw(temperature, np.random.default_rng(0))
    assert np.array_equal(tokens, again)


def test_sampler_draws_directly_only_without_filters(monkeypatch):
    """top_k, top_p, greedy and top-k logprobs need the full logits; a plain draw does not."""
    from tinkerkit.backends import sampler

    engine = _engine(QWEN3_VOCAB, train_attn=False)
    built = []
    real = head.next_token_logits
    monkeypatch.setattr(head, "next_token_logits", lambda w, h: built.append(1) or real(w, h))

    def run(topk=0, **params):
        built.clear()
        rules = sampler.job(
            [1, 2, 3],
            2,
            types.SamplingParams(max_tokens=4, seed=0, **params),
            max_context=2048,
            default_stop_tokens=[],
            decode=str,
            topk=topk,
        )
        out = sampler.draw(engine.decoder, rules)
        assert all(len(s.tokens) == 4 for s in out)
        return len(built)

    assert run(temperature=1.0) == 0
    assert run(temperature=0.5) == 0
    assert run(temperature=0.0) == 4
    assert run(temperature=1.0, top_k=20) == 4
    assert run(temperature=1.0, top_p=0.9) == 4
    assert run(temperature=1.0, topk=3) == 4
