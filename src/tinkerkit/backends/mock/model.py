"""A tiny causal language model in numpy, with LoRA on its four weight matrices.

Small enough for a training step in about a millisecond, rich enough to learn: the
prediction at position t depends on the current token, the previous one, and two
exponentially decayed averages of the whole context (a fast one, a slow one), so
it can memorise answers to questions and shift its behaviour under RL. Hand-written
forward and backward passes; ``tests/backends/test_mock_model.py`` checks the gradients
against finite differences.

    u_t      = E[x_t] + P[x_{t-1}] + fast_t @ W_fast + slow_t @ W_slow    ("attn")
    h_t      = tanh(u_t @ W_up + b_up)                                    ("mlp")
    logits_t = h_t @ W_head + b_head                                      ("unembed")

Every ``W`` is frozen and random; LoRA adds ``scaling * A^T B^T`` (PEFT's layout:
``lora_A`` is (rank, in), ``lora_B`` is (out, rank), B starts at zero).

Above ``head.FACTORISED_ABOVE`` tokens (real tokenizers) the head is a two-level
factorised softmax and E, P, C are windows of one shared table (see ``head.py`` and
``base_weights``), so a 248k vocabulary costs ~70 MB and a step stays cheap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from tinkerkit.backends.mock import head
from tinkerkit.models.mock_modules import LM_HEAD, MIX_FAST, MIX_SLOW, UP_PROJ

DTYPE = np.float32
DIM = 64
HIDDEN = 256
DECAYS = {"fast": 0.5, "slow": 0.99}
# Large vocabularies: E, P and C are windows of one table, this many rows apart
SHARED_OFFSET = 4099

# LoRA target name -> (base weight key, which LoRA option trains it)
# (the names live in tinkerkit.models.mock_modules: export refuses mock adapters by them)
TARGETS: dict[str, tuple[str, str]] = {
    MIX_FAST: ("W_fast", "train_attn"),
    MIX_SLOW: ("W_slow", "train_attn"),
    UP_PROJ: ("W_up", "train_mlp"),
    LM_HEAD: ("W_head", "train_unembed"),
}


@lru_cache(maxsize=16)
def base_weights(base_id: str, vocab: int) -> dict[str, np.ndarray]:
    """The frozen random base, a pure function of its id and vocabulary (read-only arrays).

    Up to ``head.FACTORISED_ABOVE`` tokens: dense E, P, C tables and a dense head.
    Above it: E = T[:V], P = T[s : s + V + 1], C = T[2s : 2s + V] for one table T and
    s = ``SHARED_OFFSET`` (so the vector of token x in E is that of x - s in P: a
    coincidence between unrelated ids, as with any random table), and the factorised head.
    """
    rng = np.random.default_rng(zlib.crc32(base_id.encode()))

    def normal(shape: tuple[int, ...], std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(DTYPE)

    if vocab <= head.FACTORISED_ABOVE:
        weights = {
            "E": normal((vocab, DIM), 1.0),
            "P": normal((vocab + 1, DIM), 1.0),  # row `vocab`: "no previous token"
            "C": normal((vocab, DIM), 1.0),
        }
    else:
        s = SHARED_OFFSET
        table = rng.standard_normal((vocab + 1 + 2 * s, DIM), dtype=DTYPE)
        weights = {"E": table[:vocab], "P": table[s : s + vocab + 1], "C": table[2 * s :][:vocab]}
    weights.update(
        {
            "W_fast": normal((DIM, DIM), DIM**-0.5),
            "W_slow": normal((DIM, DIM), DIM**-0.5),
            "W_up": normal((DIM, HIDDEN), (3 * DIM) ** -0.5),
            "b_up": normal((HIDDEN,), 0.1),
            **head.head_weights(vocab, HIDDEN, normal),
        }
    )
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
    head: head.HeadCache  # what the head's backward needs (dense: probs (B, T, V))


Inserts = Sequence[Sequence[tuple[int, np.ndarray]]]
"""Per row of a batch: (start, vectors (n, DIM)) that replace the token embeddings (E and
C) of positions start..start+n-1: an image's tokens (``mock.vision``)."""


def _trunk(
    w: dict[str, np.ndarray], tokens: np.ndarray, inserts: Inserts = ()
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(ctx, u, h) for right-padded ``tokens`` (B, T)."""
    vocab = w["E"].shape[0]
    length = tokens.shape[1]
    prev = np.empty_like(tokens)
    prev[:, 0] = vocab
    prev[:, 1:] = tokens[:, :-1]
    e = w["E"][tokens]
    c = w["C"][tokens]
    for row, placed in enumerate(inserts):
        for start, vectors in placed:
            e[row, start : start + len(vectors)] = vectors
            c[row, start : start + len(vectors)] = vectors
    u = e + w["P"][prev]
    ctx = {}
    for name, gamma in DECAYS.items():
        ctx[name] = np.matmul(_decay_matrix(gamma, length), c)
        u += ctx[name] @ w[f"W_{name}"]
    h = np.tanh(u @ w["W_up"] + w["b_up"])
    return ctx, u, h


def forward(
    w: dict[str, np.ndarray], tokens: np.ndarray, targets: np.ndarray, inserts: Inserts = ()
) -> tuple[np.ndarray, Activations]:
    """Target logprobs (B, T) for right-padded ``tokens`` (B, T) and ``targets`` (B, T),
    or (B, T, K) for ``targets`` (B, T, K): ``log p(targets[b, t, k] | tokens[b, :t+1])``."""
    ctx, u, h = _trunk(w, tokens, inserts)
    logprobs, cache = head.target_logprobs(w, h, targets)
    return logprobs, Activations(tokens, targets, ctx, u, h, cache)


def next_token_logprobs(
    w: dict[str, np.ndarray], tokens: np.ndarray, inserts: Sequence[tuple[int, np.ndarray]] = ()
) -> Iterator[np.ndarray]:
    """float32 ``log p(. | tokens[: i + 1])`` for every i, in blocks of rows (rows, V)."""
    _, _, h = _trunk(w, tokens[None, :], [inserts])
    yield from head.log_prob_blocks(w, h[0])


def backward(
    w: dict[str, np.ndarray], acts: Activations, dlogprobs: np.ndarray, targets: set[str]
) -> dict[str, np.ndarray]:
    """d(loss)/d(effective weight) for each LoRA target, given d(loss)/d(logprobs) shaped
    like the forward's logprobs ((B, T) or (B, T, K))."""
    flat = head.dlogits(acts.head, dlogprobs)  # (B * T, W_head columns)
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


class MockDecoder:
    """Incremental decoding with O(1) state per continuation (running context sums).

    ``logits`` (the full (n, V) distribution) is built only when asked for.
    """

    def __init__(
        self,
        w: dict[str, np.ndarray],
        prompt: np.ndarray,
        n: int,
        inserts: Sequence[tuple[int, np.ndarray]] = (),
    ) -> None:
        self.w = w
        vocab = w["E"].shape[0]
        length = len(prompt)
        c = w["C"][prompt]
        for start, vectors in inserts:  # images reach the next tokens through the context
            c[start : start + len(vectors)] = vectors
        self.sums: dict[str, np.ndarray] = {}
        self.norms: dict[str, float] = {}
        for name, gamma in DECAYS.items():
            powers = gamma ** np.arange(length - 1, -1, -1, dtype=np.float64)
            s = (powers[:, None] * c).sum(axis=0)
            self.sums[name] = np.repeat(s[None, :], n, axis=0).astype(np.float64)
            self.norms[name] = float(powers.sum())
        self.current = np.full(n, prompt[-1], dtype=np.int64)
        self.previous = np.full(n, prompt[-2] if length > 1 else vocab, dtype=np.int64)
        self._update()

    def _update(self) -> None:
        w = self.w
        u = w["E"][self.current] + w["P"][self.previous]
        for name in DECAYS:
            u = u + (self.sums[name] / self.norms[name]).astype(DTYPE) @ w[f"W_{name}"]
        self.h = np.tanh(u @ w["W_up"] + w["b_up"])
        self._logits: np.ndarray | None = None

    @property
    def logits(self) -> np.ndarray:
        if self._logits is None:
            self._logits = head.next_token_logits(self.w, self.h)
        return self._logits

    def step(self, tokens: np.ndarray) -> None:
        c = self.w["C"][tokens]
        for name, gamma in DECAYS.items():
            self.sums[name] = gamma * self.sums[name] + c
            self.norms[name] = gamma * self.norms[name] + 1.0
        self.previous = self.current
        self.current = np.asarray(tokens, dtype=np.int64)
        self._update()


class FactorisedDecoder(MockDecoder):
    """A ``MockDecoder`` over the factorised head, which also draws tokens directly
    (``DirectDraw``): O(sqrt(V)) a token at temperature 1, never the (n, V) logits."""

    _slot_bias: dict[float, head.SlotBias] | None = None

    def draw(self, temperature: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return head.draw(self.w, self.h, temperature, rng, self._bias)

    def _bias(self, scale: float) -> head.SlotBias:
        if self._slot_bias is None:
            self._slot_bias = {}
        if scale not in self._slot_bias:
            self._slot_bias[scale] = head.slot_bias(self.w["b_tok"], scale)
        return self._slot_bias[scale]


def decoder(
    w: dict[str, np.ndarray],
    prompt: np.ndarray,
    n: int,
    inserts: Sequence[tuple[int, np.ndarray]] = (),
) -> MockDecoder:
    """The decoder for ``w``'s head: ``FactorisedDecoder`` for real vocabularies."""
    cls = FactorisedDecoder if head.is_factorised(w) else MockDecoder
    return cls(w, prompt, n, inserts)
