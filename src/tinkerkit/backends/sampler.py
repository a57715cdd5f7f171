"""Token sampling over an engine's ``Decoder``, shared by every offline backend.

Semantics (as the service's ``SamplingParams``):
- ``temperature`` 0 is greedy; ``top_k`` (-1: off) and ``top_p`` filter before drawing;
- stopping: the model's end-of-turn/end-of-text tokens (EOS) always stop, except with
  ``stop=[]``, which disables every stop, EOS included, so generation runs to
  ``max_tokens``. A non-empty ``stop`` *adds* to EOS: ints are stop token ids, strings
  stop once the decoded text ends with one, a bare ``str`` is one stop string (the
  cookbook's RoleColon renderer passes ``["\n\nUser:"]`` and still expects EOS to end
  a turn). The token that completes a stop is kept in ``tokens``; reason ``stop``;
- ``max_tokens`` (None: until stop or the context is full) ends with reason ``length``;
- ``seed`` makes the draw reproducible; without it every call differs;
- ``logprobs`` are the model's own (temperature 1, unfiltered) logprobs of each sampled
  token, i.e. the same numbers ``compute_logprobs`` and training report;
- ``topk`` > 0 adds ``topk_logprobs_np``: at every generated position the ``topk`` most
  likely tokens under those same logprobs, in descending order (ties: lower id first),
  as ``TopkLogprobs`` matrices of shape (num_generated, topk).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import numpy as np
from tinker import types
from tinker.types.topk_logprobs import TopkLogprobs

from tinkerkit.backends.engine import Decoder, DirectDraw, SampleJob
from tinkerkit.rules.images import Picture


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Normalised logprobs over the last axis (float64 in, float64 out)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _draw(
    logprobs: np.ndarray, params: types.SamplingParams, rng: np.random.Generator
) -> np.ndarray:
    if params.temperature <= 0:
        return logprobs.argmax(axis=-1)
    scaled = log_softmax(logprobs / params.temperature)
    probs = np.exp(scaled)
    n, vocab = probs.shape
    if 0 < params.top_k < vocab:
        kth = np.partition(probs, vocab - params.top_k, axis=-1)[:, vocab - params.top_k]
        probs = np.where(probs >= kth[:, None], probs, 0.0)
    if params.top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        total = sorted_probs.sum(axis=-1, keepdims=True)
        before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
        keep_sorted = before < params.top_p * total
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
    probs /= probs.sum(axis=-1, keepdims=True)
    cumulative = np.cumsum(probs, axis=-1)
    u = rng.random((n, 1))
    return np.minimum((cumulative < u).sum(axis=-1), vocab - 1)


def top_k_rows(logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of ``logprobs`` (n, vocab), descending, ties
    broken by the lower token id: (token ids int32 (n, k), logprobs float32 (n, k))."""
    order = np.argsort(-logprobs, axis=-1, kind="stable")[:, :k]
    values = np.take_along_axis(logprobs, order, axis=-1)
    return order.astype(np.int32), values.astype(np.float32)


def stop_rule(
    stop: str | Sequence[str] | Sequence[int] | None, default_stop_tokens: Sequence[int]
) -> tuple[set[int], list[str]]:
    """(stop token ids, stop strings) for ``SamplingParams.stop``: EOS unless ``[]``.

    Example:
        >>> stop_rule(["\n\nUser:"], [259])
        ({259}, ['\n\nUser:'])
    """
    if stop is None:
        return set(default_stop_tokens), []
    if isinstance(stop, str):
        return set(default_stop_tokens), [stop]
    items = list(stop)
    if not items:
        return set(), []
    tokens = set(default_stop_tokens) | {int(s) for s in items if isinstance(s, int | np.integer)}
    strings = [s for s in items if isinstance(s, str)]
    return tokens, strings


def job(
    prompt: Sequence[int],
    num_samples: int,
    params: types.SamplingParams,
    *,
    max_context: int,
    default_stop_tokens: Sequence[int],
    decode: Callable[[list[int]], str],
    sequence_ids: Sequence[str] | None = None,
    topk: int = 0,
    pictures: Sequence[Picture] = (),
) -> SampleJob:
    """The request as an engine that batches sampling takes it: the budget (``max_tokens``
    within the context) and the stop rule resolved, sequence ids chosen.

    Example:
        >>> job([1, 2], 2, types.SamplingParams(max_tokens=8), max_context=64,
        ...     default_stop_tokens=[0], decode=str).budget
        8
    """
    ids = (
        tuple(sequence_ids)
        if sequence_ids is not None
        else tuple(uuid.uuid4().hex for _ in range(num_samples))
    )
    stop_tokens, stop_strings = stop_rule(params.stop, default_stop_tokens)
    budget = max_context - len(prompt)
    if params.max_tokens is not None:
        budget = min(budget, params.max_tokens)
    return SampleJob(
        list(prompt),
        num_samples,
        params,
        budget,
        frozenset(stop_tokens),
        tuple(stop_strings),
        decode,
        ids,
        topk,
        tuple(pictures),
    )


def draw(
    decoder_factory: Callable[[Sequence[int], int], Decoder], rules: SampleJob
) -> list[types.SampledSequence]:
    """The continuations of ``rules`` (a ``job``), drawn in numpy from the decoder's logits."""
    prompt, num_samples, params = rules.prompt, rules.num_samples, rules.params
    ids, budget, topk, decode = rules.sequence_ids, rules.budget, rules.topk, rules.decode
    stop_tokens, stop_strings = rules.stop_tokens, rules.stop_strings
    rng = np.random.default_rng(params.seed)
    decoder = decoder_factory(prompt, num_samples)
    tokens: list[list[int]] = [[] for _ in range(num_samples)]
    logprobs: list[list[float]] = [[] for _ in range(num_samples)]
    top_ids: list[list[np.ndarray]] = [[] for _ in range(num_samples)]
    top_lps: list[list[np.ndarray]] = [[] for _ in range(num_samples)]
    reasons: list[types.StopReason | None] = [None] * num_samples
    direct = _direct(decoder, params, topk)
    for step in range(budget):
        if direct is not None:
            drawn, drawn_lp = direct.draw(params.temperature, rng)
        else:
            lp = log_softmax(decoder.logits)
            drawn = _draw(lp, params, rng)
            drawn_lp = lp[np.arange(num_samples), drawn]
            if topk:
                step_ids, step_lps = top_k_rows(lp, topk)
        for i in range(num_samples):
            if reasons[i] is not None:
                continue
            token = int(drawn[i])
            tokens[i].append(token)
            logprobs[i].append(float(drawn_lp[i]))
            if topk:
                top_ids[i].append(step_ids[i])
                top_lps[i].append(step_lps[i])
            if token in stop_tokens or (
                stop_strings and any(decode(tokens[i]).endswith(s) for s in stop_strings)
            ):
                reasons[i] = "stop"
        if all(r is not None for r in reasons) or step == budget - 1:
            break
        decoder.step(drawn)
    return [
        types.SampledSequence(
            stop_reason=reasons[i] or "length",
            sequence_id=ids[i],
            tokens_np=np.asarray(tokens[i], dtype=np.int32),
            logprobs_np=np.asarray(logprobs[i], dtype=np.float32),
            topk_logprobs_np=_stack_topk(top_ids[i], top_lps[i], topk) if topk else None,
        )
        for i in range(num_samples)
    ]


def _direct(decoder: Decoder, params: types.SamplingParams, topk: int) -> DirectDraw | None:
    """The decoder, where it can draw without the full logits: a plain draw at a positive
    temperature (no top-k/top-p filter, no top-k logprobs to report)."""
    plain = params.temperature > 0 and params.top_k <= 0 and params.top_p >= 1.0
    if plain and not topk and isinstance(decoder, DirectDraw):
        return decoder
    return None


def _stack_topk(ids: list[np.ndarray], lps: list[np.ndarray], k: int) -> TopkLogprobs:
    if not ids:
        return TopkLogprobs(np.zeros((0, k), np.int32), np.zeros((0, k), np.float32))
    return TopkLogprobs(token_ids=np.stack(ids), logprobs=np.stack(lps))
