"""The ``local`` engine against plain torch/transformers computations of the same thing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tinker import types  # noqa: E402

from tinkerkit.backends.engine import EngineInput, EngineState, LoraConfig, load  # noqa: E402
from tinkerkit.backends.local import models  # noqa: E402
from tinkerkit.backends.local.batching import MAX_WASTE, buckets  # noqa: E402
from tinkerkit.backends.local.engine import LocalEngine, LocalFactory  # noqa: E402
from tinkerkit.errors import UnknownModelError  # noqa: E402
from tinkerkit.models.registry import TINY  # noqa: E402

VOCAB = 261
LENGTHS = [3, 17, 64, 5, 60, 16]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def make_engine(seed: int = 0, rank: int = 4, randomize: bool = True) -> LocalEngine:
    """An engine whose LoRA B is non-zero too, so every LoRA tensor gets a gradient."""
    factory = LocalFactory()
    engine = factory.create(factory.resolve(TINY), LoraConfig(rank=rank, seed=seed))
    if randomize:
        rng = np.random.default_rng(seed + 100)
        load(
            engine,
            EngineState(
                {
                    k: (rng.standard_normal(v.shape) * 0.1).astype(np.float32)
                    for k, v in engine.state().weights.items()
                }
            ),
        )
    return engine


def make_batch(lengths: list[int], seed: int = 0) -> list[EngineInput]:
    rng = np.random.default_rng(seed)
    return [EngineInput(rng.integers(0, VOCAB, n), rng.integers(0, VOCAB, n)) for n in lengths]


def padded_logprobs(engine: LocalEngine, batch: list[EngineInput]) -> Any:
    """Target logprobs (B, T) the plain way: one right-padded batch with an attention mask."""
    width = max(len(b.tokens) for b in batch)
    tokens = torch.zeros(len(batch), width, dtype=torch.long)
    targets = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for row, b in enumerate(batch):
        n = len(b.tokens)
        tokens[row, :n] = torch.from_numpy(b.tokens)
        targets[row, :n] = torch.from_numpy(b.targets)
        mask[row, :n] = 1
    logits = engine.lm(input_ids=tokens, attention_mask=mask, use_cache=False).logits
    return logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]


def grads(engine: LocalEngine) -> dict[str, np.ndarray]:
    return {k: _grad(p).numpy().copy() for k, p in engine.params.items()}


def _grad(p: Any) -> Any:
    assert p.grad is not None
    return p.grad.detach()


def train_step(engine: LocalEngine, batch: list[EngineInput], hp: types.AdamParams) -> None:
    fp = engine.forward(batch, grad=True)
    fp.backward([-np.ones_like(lp) for lp in fp.logprobs])  # cross-entropy
    engine.optim_step(hp)


def test_buckets_keep_padding_bounded_and_cover_every_datum():
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(16, 513, 64))
    groups = buckets(lengths)
    assert sorted(i for g in groups for i in g) == list(range(64))
    for g in groups:
        padded = max(lengths[i] for i in g) * len(g)
        assert padded <= MAX_WASTE * sum(lengths[i] for i in g) or len(g) == 1


def test_backward_matches_autograd_on_padded_batch():
    engine = make_engine()
    batch = make_batch(LENGTHS)
    d = [np.random.default_rng(i).standard_normal(n) for i, n in enumerate(LENGTHS)]
    engine.forward(batch, grad=True).backward(d)
    ours = grads(engine)
    for p in engine.params.values():
        _grad(p).zero_()
    lp = padded_logprobs(engine, batch)
    total = sum(
        (torch.tensor(di, dtype=torch.float32) * lp[i, : len(di)]).sum() for i, di in enumerate(d)
    )
    total.backward()
    theirs = grads(engine)
    assert set(ours) == set(theirs)
    for key in ours:
        assert np.abs(ours[key]).max() > 0, key
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-5, rtol=1e-4, err_msg=key)


def test_gradients_accumulate_across_backward_calls():
    engine = make_engine()
    batch = make_batch([7, 9])
    d = [np.ones(7), np.ones(9)]
    engine.forward(batch, grad=True).backward(d)
    once = grads(engine)
    engine.forward(batch, grad=True).backward(d)
    for key, value in grads(engine).items():
        np.testing.assert_allclose(value, 2 * once[key], rtol=1e-5, atol=1e-7)


def test_bucketed_logprobs_match_unbatched():
    engine = make_engine()
    batch = make_batch(LENGTHS)
    together = engine.forward(batch, grad=False).logprobs
    for item, lp in zip(batch, together, strict=True):
        alone = engine.forward([item], grad=False).logprobs[0]
        assert lp.dtype == np.float32 and lp.shape == (len(item.tokens),)
        np.testing.assert_allclose(lp, alone, atol=1e-5)
    with torch.no_grad():
        padded = padded_logprobs(engine, batch)
    for i, lp in enumerate(together):
        np.testing.assert_allclose(lp, padded[i, : len(lp)].numpy(), atol=1e-5)


def test_decoder_matches_full_forward():
    engine = make_engine()
    prompt = [5, 9, 200, 17, 3]
    steps = np.array([[11, 12], [250, 0], [7, 7]])
    dec = engine.decoder(prompt, 2)
    seen = [dec.logits.copy()]
    for tokens in steps:
        dec.step(tokens)
        seen.append(dec.logits.copy())
    for row in range(2):
        full = torch.tensor([prompt + list(steps[:, row])])
        with torch.no_grad():
            logits = engine.lm(input_ids=full, use_cache=False).logits[0].numpy()
        for k, got in enumerate(seen):
            np.testing.assert_allclose(got[row], logits[len(prompt) - 1 + k], atol=1e-4)


def test_weights_and_optimizer_state_round_trip_exactly():
    hp = types.AdamParams(learning_rate=1e-2, weight_decay=0.01, grad_clip_norm=1.0)
    batch = make_batch([12, 30, 8])
    first = make_engine(seed=0, randomize=False)
    for _ in range(3):
        train_step(first, batch, hp)
    weights, state = first.state().weights, first.state().optimizer
    assert int(state["step"][0]) == 3
    second = make_engine(seed=1, randomize=False)
    load(second, EngineState(weights, state))
    for _ in range(2):
        train_step(first, batch, hp)
        train_step(second, batch, hp)
    a, b = first.state().weights, second.state().weights
    assert all(np.array_equal(a[k], b[k]) for k in a)
    sa, sb = first.state().optimizer, second.state().optimizer
    assert set(sa) == set(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_load_rejects_wrong_names_and_shapes():
    engine = make_engine(randomize=False)
    weights = engine.state().weights
    key = next(iter(weights))
    with pytest.raises(ValueError, match="do not match"):
        load(engine, EngineState({k: v for k, v in weights.items() if k != key}))
    with pytest.raises(ValueError, match="shape"):
        load(engine, EngineState({**weights, key: np.zeros((1, 1), np.float32)}))


@pytest.mark.parametrize(("weight_decay", "clip"), [(0.0, 0.0), (0.1, 0.0), (0.1, 0.05)])
def test_optim_step_is_torch_adamw(weight_decay, clip):
    engine = make_engine()
    batch = make_batch([20, 9])
    hp = types.AdamParams(
        learning_rate=5e-3,
        beta1=0.8,
        beta2=0.99,
        eps=1e-8,
        weight_decay=weight_decay,
        grad_clip_norm=clip,
    )
    mirror = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in engine.state().weights.items()}
    opt = torch.optim.AdamW(
        list(mirror.values()), lr=5e-3, betas=(0.8, 0.99), eps=1e-8, weight_decay=weight_decay
    )
    for _ in range(2):
        fp = engine.forward(batch, grad=True)
        fp.backward([np.full(lp.shape, 0.5) for lp in fp.logprobs])
        for key, g in grads(engine).items():
            mirror[key].grad = torch.from_numpy(g)
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in mirror.values()))
        if clip:
            assert norm > clip  # clipping really acts
            torch.nn.utils.clip_grad_norm_(list(mirror.values()), clip)
        opt.step()
        metrics = engine.optim_step(hp)
        assert metrics["grad_norm"] == pytest.approx(float(norm), rel=1e-5)
        assert metrics["learning_rate"] == 5e-3
        assert all(not _grad(p).any() for p in engine.params.values())
    for key, value in engine.state().weights.items():
        np.testing.assert_allclose(value, mirror[key].detach().numpy(), rtol=0, atol=1e-7)


def test_same_seed_same_adapter_and_snapshot_is_frozen():
    a, b = make_engine(seed=3, randomize=False), make_engine(seed=3, randomize=False)
    c = make_engine(seed=4, randomize=False)
    wa, wb, wc = a.state().weights, b.state().weights, c.state().weights
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)
    snap = a.snapshot()
    batch = make_batch([10])
    before = snap.forward(batch, grad=False).logprobs[0]
    train_step(a, batch, types.AdamParams(learning_rate=1e-2))
    assert np.array_equal(snap.forward(batch, grad=False).logprobs[0], before)
    assert not np.array_equal(a.forward(batch, grad=False).logprobs[0], before)
    # the snapshot shares the frozen base tensors instead of copying them
    base = a.lm.model.embed_tokens.weight
    assert snap.lm.model.embed_tokens.weight.data_ptr() == base.data_ptr()


def test_export_base_loads_offline_with_same_logits(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = models.export_base(TINY, tmp_path / "tiny")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tok.encode("héllo") == models.tokenizer(models.Source(TINY, None)).encode("héllo")
    ids = torch.tensor([[1, 50, 100, 260, 7]])
    with torch.no_grad():
        want = models.build_tiny()(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # ... and the exported folder is itself a model the local backend resolves
    spec = LocalFactory().resolve(str(out))
    assert (spec.arch, spec.vocab_size, spec.max_context_length) == ("llama", VOCAB, 2048)
    with pytest.raises(FileExistsError):
        models.export_base(TINY, out)


def test_unknown_model_lists_tiny():
    with pytest.raises(UnknownModelError, match="tinkerkit/tiny") as info:
        LocalFactory().resolve("no-such-org/no-such-model")
    assert TINY in info.value.available
    assert "no-such-org/no-such-model" in str(info.value)
