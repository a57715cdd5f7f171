"""The mock model's head ("unembed"): dense for small vocabularies, factorised for real ones.

Dense, for vocabularies of at most ``FACTORISED_ABOVE`` tokens (the byte vocabulary):

    p(v | h) = softmax(h @ W_head + b_head)[v]                         W_head (HIDDEN, V)

Two-level factorised above it (real tokenizers: 128k-250k tokens). Token v sits at
(c, j) = divmod(v, J) on a grid of C clusters of J slots, J = ceil(sqrt(V)), C = ceil(V / J):

    p(v | h) = softmax_c(h @ W_cls + b_cls)[c] * softmax_j(h @ W_tok + b_tok[c])[j]

with ``W_head = [W_cls | W_tok]`` (HIDDEN, C + J), a bias per cluster and one per token
(``b_tok`` (C, J); the last cluster's unused slots hold -inf, so its softmax runs over its
real tokens only). Both factors are normalised, so p sums to one over all V tokens exactly.
A target's logprob costs O((C + J) * HIDDEN) instead of O(V * HIDDEN), and training never
builds a (B, T, V) array; only the full distribution (decoding, prompt scoring) is O(V)
per position. LoRA on ``lm_head`` trains ``W_head``: which cluster and which slot, so any
single token can be learned. What it cannot express: the h-dependent part of the slot
logits is shared by all clusters (only the biases are per token), so two tokens in the
same slot of different clusters move together within their clusters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

FACTORISED_ABOVE = 4096
# Cells (rows x vocabulary) of one block of the full distribution: 32 MB in float32, so
# a 2k-token prompt at a 248k vocabulary is scored in blocks of ~30 rows.
_BLOCK_CELLS = 1 << 23
_TINY = np.finfo(np.float32).tiny


def grid(vocab: int) -> tuple[int, int]:
    """(clusters C, slots per cluster J) of the factorised head: J = ceil(sqrt(V))."""
    width = math.isqrt(vocab - 1) + 1
    return -(-vocab // width), width


def head_weights(
    vocab: int, hidden: int, normal: Callable[[tuple[int, ...], float], np.ndarray]
) -> dict[str, np.ndarray]:
    """The head's frozen random weights (drawn last, so the dense base is unchanged)."""
    if vocab <= FACTORISED_ABOVE:
        return {
            "W_head": normal((hidden, vocab), 2.0 * hidden**-0.5),
            "b_head": normal((vocab,), 0.5),
        }
    clusters, width = grid(vocab)
    # each factor gets half the dense head's logit variance, so the two add up to it
    half = 0.5**0.5
    b_tok = normal((clusters * width,), 0.5 * half)
    b_tok[vocab:] = -np.inf
    return {
        "W_head": normal((hidden, clusters + width), 2.0 * half * hidden**-0.5),
        "b_cls": normal((clusters,), 0.5 * half),
        "b_tok": b_tok.reshape(clusters, width),
    }


def is_factorised(w: dict[str, np.ndarray]) -> bool:
    return "b_tok" in w


@dataclass
class DenseCache:
    targets: np.ndarray  # (B, T) or (B, T, K)
    probs: np.ndarray  # (B, T, V)


@dataclass
class FactorisedCache:
    clusters: np.ndarray  # (N, C): p(c | h)
    slots: np.ndarray  # (N, J) or (N, K, J): p(j | c, h) for each target's cluster c
    c: np.ndarray  # (N,) or (N, K): the targets' clusters
    j: np.ndarray  # (N,) or (N, K): the targets' slots


HeadCache = DenseCache | FactorisedCache


def target_logprobs(
    w: dict[str, np.ndarray], h: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, HeadCache]:
    """log p(targets | h) for h (B, T, HIDDEN) and targets (B, T) or (B, T, K)."""
    if not is_factorised(w):
        return _dense_logprobs(w, h, targets)
    rows = targets.shape[0] * targets.shape[1]
    z = h.reshape(rows, -1) @ w["W_head"]
    n_clusters, width = w["b_tok"].shape
    flat = targets.reshape(rows, -1) if targets.ndim == 3 else targets.reshape(rows)
    c, j = np.divmod(flat, width)
    zc = z[:, :n_clusters] + w["b_cls"]
    p_c, norm_c = _softmax(zc)
    if flat.ndim == 1:
        zj = w["b_tok"][c]  # (N, J): the slots of each position's target cluster
        zj += z[:, n_clusters:]
        p_j, norm_j = _softmax(zj)
        at = np.arange(rows)
        logprobs = (zc[at, c] - norm_c[:, 0]) + (zj[at, j] - norm_j[:, 0])
    else:
        zj = w["b_tok"][c]  # (N, K, J)
        zj += z[:, None, n_clusters:]
        p_j, norm_j = _softmax(zj)
        picked_j = np.take_along_axis(zj, j[..., None], axis=-1)[..., 0]
        logprobs = (np.take_along_axis(zc, c, axis=1) - norm_c) + (picked_j - norm_j[..., 0])
    return logprobs.reshape(targets.shape), FactorisedCache(p_c, p_j, c, j)


def dlogits(cache: HeadCache, g: np.ndarray) -> np.ndarray:
    """d(loss)/d(h @ W_head) (N, W_head columns), given d(loss)/d(target logprobs) ``g``."""
    if isinstance(cache, DenseCache):
        return _dense_dlogits(cache, g)
    rows, n_clusters = cache.clusters.shape
    out = np.empty((rows, n_clusters + cache.slots.shape[-1]), cache.clusters.dtype)
    dzc, dzj = out[:, :n_clusters], out[:, n_clusters:]
    if cache.c.ndim == 1:
        g = g.reshape(rows)
        at = np.arange(rows)
        np.multiply(cache.clusters, -g[:, None], out=dzc)
        dzc[at, cache.c] += g
        np.multiply(cache.slots, -g[:, None], out=dzj)
        dzj[at, cache.j] += g
    else:  # K targets per position: a token may fill several slots, so scatter-add
        g = g.reshape(rows, -1)
        np.multiply(cache.clusters, -g.sum(axis=-1, dtype=g.dtype)[:, None], out=dzc)
        _scatter_add(dzc, cache.c, g)
        np.einsum("nk,nkj->nj", -g, cache.slots, out=dzj)
        _scatter_add(dzj, cache.j, g)
    return out


def next_token_logits(w: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    """float64 (n, V) logits of the next-token distribution for h (n, HIDDEN) (the
    factorised head gives them normalised: its exact log-probabilities)."""
    if not is_factorised(w):
        return (h @ w["W_head"] + w["b_head"]).astype(np.float64)
    return _factorised_log_probs(w, h, np.float64)


def log_prob_blocks(w: dict[str, np.ndarray], h: np.ndarray) -> Iterator[np.ndarray]:
    """float32 log-softmax rows (rows, V) for h (n, HIDDEN), a block of rows at a time."""
    cells = w["b_tok"].size if is_factorised(w) else w["b_head"].shape[0]
    step = max(1, _BLOCK_CELLS // cells)
    for start in range(0, len(h), step):
        block = h[start : start + step]
        if is_factorised(w):
            yield _factorised_log_probs(w, block, np.float32)
            continue
        probs = block @ w["W_head"] + w["b_head"]
        probs -= probs.max(axis=-1, keepdims=True)
        np.exp(probs, out=probs)
        probs /= probs.sum(axis=-1, keepdims=True)
        yield np.log(np.maximum(probs, _TINY))


def _factorised_log_probs(
    w: dict[str, np.ndarray], h: np.ndarray, dtype: type[np.floating]
) -> np.ndarray:
    vocab = w["E"].shape[0]
    n_clusters = w["b_cls"].shape[0]
    z = (h @ w["W_head"]).astype(np.float64)
    log_c = z[:, :n_clusters] + w["b_cls"]
    log_c -= _log_normaliser(log_c)
    slots = z[:, n_clusters:]
    log_c -= _slot_normalisers(slots, slot_bias(w["b_tok"], 1.0))  # now log p(c) - log Z_c
    out = np.add(slots.astype(dtype)[:, None, :], w["b_tok"], dtype=dtype)  # (n, C, J)
    out += log_c.astype(dtype)[:, :, None]
    return out.reshape(len(h), -1)[:, :vocab]


def draw(
    w: dict[str, np.ndarray],
    h: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    scaled_bias: Callable[[float], SlotBias] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One token per row of h (n, HIDDEN) from the factorised head at ``temperature`` > 0,
    and its logprob at temperature 1: (tokens (n,), logprobs float64 (n,)).

    A cluster, then a slot in it: at temperature 1, p(c) then p(j | c), O(C + J) a row.
    At temperature T the target is p(v)^(1/T) / Z, whose cluster marginal is
    q(c) ∝ (p(c) / Z_c)^(1/T) * Z_c(T) with Z_c(T) = sum_j exp((s_j + b_cj) / T): one
    (n, J) @ (J, C) matmul, never an (n, V) array. The draw is exact, not approximate.
    ``scaled_bias`` caches ``slot_bias(b_tok, 1 / T)`` across the steps of one decode.

    Example:
        >>> tokens, logprobs = draw(w, h, 1.0, np.random.default_rng(0))
    """
    bias_of = scaled_bias or (lambda scale: slot_bias(w["b_tok"], scale))
    n_clusters, width = w["b_tok"].shape
    z = (h @ w["W_head"]).astype(np.float64)
    log_c = _log_softmax(z[:, :n_clusters] + w["b_cls"])  # log p(c)
    slots = z[:, n_clusters:]
    at = np.arange(len(h))
    if temperature == 1.0:
        c = _draw_rows(log_c, rng)
        log_j = _log_softmax(slots + w["b_tok"][c])  # log p(j | c)
        j = _draw_rows(log_j, rng)
        return c * width + j, log_c[at, c] + log_j[at, j]
    inverse = 1.0 / temperature
    log_z = _slot_normalisers(slots, bias_of(1.0))  # log Z_c, (n, C)
    log_q = (log_c - log_z) * inverse + _slot_normalisers(slots * inverse, bias_of(inverse))
    c = _draw_rows(_log_softmax(log_q), rng)
    zj = slots + w["b_tok"][c]
    j = _draw_rows(_log_softmax(zj * inverse), rng)
    return c * width + j, log_c[at, c] + zj[at, j] - log_z[at, c]


@dataclass(frozen=True)
class SlotBias:
    """The slot biases scaled by ``scale`` (C, J), and what ``_slot_normalisers`` builds
    from them: exp(scaled - top) transposed (J, C) with its per-cluster shift ``top`` (C,)."""

    scaled: np.ndarray
    exp_t: np.ndarray
    top: np.ndarray


def slot_bias(b_tok: np.ndarray, scale: float) -> SlotBias:
    """The O(V) exponentials ``_slot_normalisers`` needs, for ``b_tok`` times ``scale``."""
    scaled = b_tok.astype(np.float64) * scale
    top = scaled.max(axis=1)
    return SlotBias(scaled, np.exp(scaled - top[:, None]).T.copy(), top)


def _draw_rows(log_p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of normalised log-probabilities (n, K), by inverse CDF."""
    cumulative = np.cumsum(np.exp(log_p), axis=-1)
    u = rng.random((len(log_p), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < u).sum(axis=-1), log_p.shape[1] - 1)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in a new array (-inf entries stay -inf)."""
    out = x - x.max(axis=-1, keepdims=True)
    out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
    return out


def _slot_normalisers(slots: np.ndarray, bias: SlotBias) -> np.ndarray:
    """log Z_c = log sum_j exp(slots[n, j] + bias.scaled[c, j]) for every row and cluster,
    (n, C) float64: one matmul of exponentials, not an exp over all n x C x J cells."""
    top_s = slots.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        out = np.log(np.exp(slots - top_s) @ bias.exp_t) + top_s + bias.top
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():  # logits spread wider than float64's exp range: cell by cell
        cells = slots[bad][:, None, :] + bias.scaled
        top = cells.max(axis=-1)
        out[bad] = top + _log_normaliser(cells)[..., 0]
    return out


def _softmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shifts ``x`` in place by its max over the last axis; returns (softmax, log
    normaliser (..., 1)), so that log softmax(x) = x - normaliser."""
    x -= x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    total = e.sum(axis=-1, keepdims=True)
    e /= total
    return e, np.log(total)


def _log_normaliser(x: np.ndarray) -> np.ndarray:
    """Like ``_softmax`` without the softmax: log softmax(x) = x - the result."""
    x -= x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _scatter_add(out: np.ndarray, index: np.ndarray, g: np.ndarray) -> None:
    """out[n, index[n, k]] += g[n, k], duplicates accumulated (``out`` is (N, M), maybe a
    view)."""
    positions = np.arange(out.shape[0])[:, None] * out.shape[1]
    flat = (positions + index.reshape(out.shape[0], -1)).reshape(-1)
    out += np.bincount(flat, weights=g.reshape(-1), minlength=out.size).reshape(out.shape)


def _dense_logprobs(
    w: dict[str, np.ndarray], h: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, DenseCache]:
    logits = h @ w["W_head"] + w["b_head"]
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    probs = logits
    if targets.ndim == h.ndim - 1:
        picked = np.take_along_axis(probs, targets[..., None], axis=-1)[..., 0]
    else:  # (B, T, K): K targets per position, each against the full vocabulary
        picked = np.take_along_axis(probs, targets, axis=-1)
    logprobs = np.log(np.maximum(picked, _TINY))
    return logprobs, DenseCache(targets, probs)


def _dense_dlogits(cache: DenseCache, g: np.ndarray) -> np.ndarray:
    probs, targets = cache.probs, cache.targets
    if g.ndim == 2:
        # d logp_target / d logits = onehot(target) - probs
        dlogits = probs * (-g[..., None])
        np.put_along_axis(
            dlogits,
            targets[..., None],
            np.take_along_axis(dlogits, targets[..., None], axis=-1) + g[..., None],
            axis=-1,
        )
    else:
        # d/d logits of sum_k g_k * logp(x_k) = sum_k g_k * onehot(x_k) - (sum_k g_k) * probs
        dlogits = probs * (-g.sum(axis=-1, dtype=probs.dtype)[..., None])
        _scatter_add(dlogits.reshape(-1, probs.shape[-1]), targets, g)
    return dlogits.reshape(-1, probs.shape[-1])
