"""A tiny causal language model in numpy, with LoRA on its four weight matrices.

Small enough for a training step in about a millisecond, rich enough to learn: the
prediction at position t depends on the current token, the previous one, and two
exponentially decayed averages of the whole context (a fast one, a slow one), so
it can memorise answers to questions and shift its behaviour under RL. Hand-written
forward and backward passes; ``tests/unit/test_mock_model.py`` checks the gradients
against finite differences.

    u_t      = E[x_t] + P[x_{t-1}] + fast_t @ W_fast + slow_t @ W_slow    ("attn")
    h_t      = tanh(u_t @ W_up + b_up)                                    ("mlp")
    logits_t = h_t @ W_head + b_head                                      ("unembed")

Every ``W`` is frozen and random; LoRA adds ``scaling * A^T B^T`` (PEFT's layout:
``lora_A`` is (rank, in), ``lora_B`` is (out, rank), B starts at zero).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

DTYPE = np.float32
DIM = 64
HIDDEN = 256
DECAYS = {"fast": 0.5, "slow": 0.99}

# LoRA target name -> (base weight key, which LoRA option trains it)
TARGETS: dict[str, tuple[str, str]] = {
    "model.mix.fast": ("W_fast", "train_attn"),
    "model.mix.slow": ("W_slow", "train_attn"),
    "model.mlp.up_proj": ("W_up", "train_mlp"),
    "lm_head": ("W_head", "train_unembed"),
}


@lru_cache(maxsize=16)
def base_weights(base_id: str, vocab: int) -> dict[str, np.ndarray]:
    """The frozen random base, a pure function of its id (read-only arrays)."""
    rng = np.random.default_rng(zlib.crc32(base_id.encode()))

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(DTYPE)

    weights = {
        "E": normal((vocab, DIM), 1.0),
        "P": normal((vocab + 1, DIM), 1.0),  # row `vocab`: "no previous token"
        "C": normal((vocab, DIM), 1.0),
        "W_fast": normal((DIM, DIM), DIM**-0.5),
        "W_slow": normal((DIM, DIM), DIM**-0.5),
        "W_up": normal((DIM, HIDDEN), (3 * DIM) ** -0.5),
        "b_up": normal((HIDDEN,), 0.1),
        "W_head": normal((HIDDEN, vocab), 2.0 * HIDDEN**-0.5),
        "b_head": normal((vocab,), 0.5),
    }
    for array in weights.values():
        array.flags.writeable = False
    return weights


@lru_cache(maxsize=64)
def _decay_matrix(gamma: float, length: int) -> np.ndarray:
    """Causal weights D[t, s] = gamma^(t-s) / sum_s' gamma^(t-s'), for s <= t."""
    idx = np.arange(length)
    diff = idx[:, None] - idx[None, :]
    d = np.where(diff >= 0, gamma ** np.maximum(diff, 0).astype(np.float64), 0.0)
    d /= d.sum(axis=1, keepdims=True)
    out = d.astype(DTYPE)
    out.flags.writeable = False
    return out


@dataclass
class Lora:
    """LoRA tensors by target name: (A (rank, in), B (out, rank))."""

    scaling: float
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def effective(base: dict[str, np.ndarray], lora: Lora | None) -> dict[str, np.ndarray]:
    """Base weights with the LoRA deltas folded in."""
    weights = dict(base)
    if lora is not None:
        for target, (a, b) in lora.tensors.items():
            key = TARGETS[target][0]
            weights[key] = base[key] + lora.scaling * (a.T @ b.T)
    return weights


@dataclass
class Activations:
    tokens: np.ndarray  # (B, T) int
    targets: np.ndarray  # (B, T) or (B, T, K) int
    ctx: dict[str, np.ndarray]  # "fast"/"slow" -> (B, T, DIM)
    u: np.ndarray  # (B, T, DIM)
    h: np.ndarray  # (B, T, HIDDEN)
    probs: np.ndarray  # (B, T, V)


def forward(
    w: dict[str, np.ndarray], tokens: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, Activations]:
    """Target logprobs (B, T) for right-padded ``tokens`` (B, T) and ``targets`` (B, T),
    or (B, T, K) for ``targets`` (B, T, K): ``log p(targets[b, t, k] | tokens[b, :t+1])``."""
    vocab = w["E"].shape[0]
    length = tokens.shape[1]
    prev = np.empty_like(tokens)
    prev[:, 0] = vocab
    prev[:, 1:] = tokens[:, :-1]
    u = w["E"][tokens] + w["P"][prev]
    c = w["C"][tokens]
    ctx = {}
    for name, gamma in DECAYS.items():
        ctx[name] = np.matmul(_decay_matrix(gamma, length), c)
        u += ctx[name] @ w[f"W_{name}"]
    h = np.tanh(u @ w["W_up"] + w["b_up"])
    logits = h @ w["W_head"] + w["b_head"]
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    probs = logits
    if targets.ndim == tokens.ndim:
        picked = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    else:  # (B, T, K): K targets per position, each against the full vocabulary
        picked = np.take_along_axis(probs, targets, axis=-1)
    logprobs = np.log(np.maximum(picked, np.finfo(DTYPE).tiny))
    return logprobs, Activations(tokens, targets, ctx, u, h, probs)


def backward(
    w: dict[str, np.ndarray], acts: Activations, dlogprobs: np.ndarray, targets: set[str]
) -> dict[str, np.ndarray]:
    """d(loss)/d(effective weight) for each LoRA target, given d(loss)/d(logprobs) shaped
    like the forward's logprobs ((B, T) or (B, T, K))."""
    if dlogprobs.ndim == 2:
        # d logp_target / d logits = onehot(target) - probs
        dlogits = acts.probs * (-dlogprobs[..., None])
        np.put_along_axis(
            dlogits,
            acts.targets[..., None],
            np.take_along_axis(dlogits, acts.targets[..., None], axis=-1) + dlogprobs[..., None],
            axis=-1,
        )
    else:
        dlogits = _topk_dlogits(acts.probs, acts.targets, dlogprobs)
    flat = dlogits.reshape(-1, dlogits.shape[-1])
    h = acts.h.reshape(-1, acts.h.shape[-1])
    grads: dict[str, np.ndarray] = {}
    if "lm_head" in targets:
        grads["lm_head"] = h.T @ flat
    need_lower = targets - {"lm_head"}
    if not need_lower:
        return grads
    dz = (flat @ w["W_head"].T) * (1.0 - h * h)
    u = acts.u.reshape(-1, acts.u.shape[-1])
    if "model.mlp.up_proj" in targets:
        grads["model.mlp.up_proj"] = u.T @ dz
    if need_lower - {"model.mlp.up_proj"}:
        du = dz @ w["W_up"].T
        for name in DECAYS:
            target = f"model.mix.{name}"
            if target in targets:
                ctx = acts.ctx[name].reshape(-1, DIM)
                grads[target] = ctx.T @ du
    return grads


def _topk_dlogits(probs: np.ndarray, targets: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d/d logits of sum_k g_k * logp(x_k) = sum_k g_k * onehot(x_k) - (sum_k g_k) * probs.

    A token may appear in several of the K slots (padding does), so the one-hot
    parts are accumulated with ``bincount`` rather than assigned.
    """
    dlogits = probs * (-g.sum(axis=-1, dtype=DTYPE)[..., None])
    vocab = probs.shape[-1]
    positions = np.arange(targets.shape[0] * targets.shape[1])[:, None] * vocab
    index = (positions + targets.reshape(positions.shape[0], -1)).reshape(-1)
    dlogits.reshape(-1)[:] += np.bincount(index, weights=g.reshape(-1), minlength=dlogits.size)
    return dlogits


class MockDecoder:
    """Incremental decoding with O(1) state per continuation (running context sums)."""

    def __init__(self, w: dict[str, np.ndarray], prompt: np.ndarray, n: int) -> None:
        self.w = w
        vocab = w["E"].shape[0]
        length = len(prompt)
        c = w["C"][prompt]
        self.sums: dict[str, np.ndarray] = {}
        self.norms: dict[str, float] = {}
        for name, gamma in DECAYS.items():
            powers = gamma ** np.arange(length - 1, -1, -1, dtype=np.float64)
            s = (powers[:, None] * c).sum(axis=0)
            self.sums[name] = np.repeat(s[None, :], n, axis=0).astype(np.float64)
            self.norms[name] = float(powers.sum())
        self.current = np.full(n, prompt[-1], dtype=np.int64)
        self.previous = np.full(n, prompt[-2] if length > 1 else vocab, dtype=np.int64)
        self.logits = self._logits()

    def _logits(self) -> np.ndarray:
        w = self.w
        u = w["E"][self.current] + w["P"][self.previous]
        for name in DECAYS:
            u = u + (self.sums[name] / self.norms[name]).astype(DTYPE) @ w[f"W_{name}"]
        h = np.tanh(u @ w["W_up"] + w["b_up"])
        return (h @ w["W_head"] + w["b_head"]).astype(np.float64)

    def step(self, tokens: np.ndarray) -> None:
        c = self.w["C"][tokens]
        for name, gamma in DECAYS.items():
            self.sums[name] = gamma * self.sums[name] + c
            self.norms[name] = gamma * self.norms[name] + 1.0
        self.previous = self.current
        self.current = np.asarray(tokens, dtype=np.int64)
        self.logits = self._logits()
