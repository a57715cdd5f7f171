"""The prompt-side extras of a sample request, from the model's full next-token distributions.

``sample(topk_prompt_logprobs=k, target_prompt_logprobs=ids, prompt_alt_tokens_k=k)``
read the distribution over the vocabulary at each prompt position. The engines' only
path to full logits is the ``Decoder``, so the prompt is fed through one token at a
time (``decoder(prompt[:start], 1)``, then ``step``): position ``p`` reads
``log_softmax(logits)`` after ``prompt[:p]``. Every logprob reported is the model's own
temperature-1 logprob, the same numbers as ``prompt_logprobs`` and ``compute_logprobs``.

Shapes and meanings are tinker 0.38's (``SampleResponse``):

- ``topk_prompt_logprobs_np``: ``TopkLogprobs`` (len(prompt), k), rows in descending
  logprob order (ties: lower id first). Row 0 has no context and, with
  ``prompt_logprobs_last_n=N``, every row before the last N is unscored: those rows are
  all sentinel (token 0, logprob -99999.0), which the SDK's list form reads as ``None``.
- ``target_prompt_logprobs``: float32 ``TensorData`` of the request's shape and layout
  (dense, or sparse CSR with the request's indices); cell ``[i, j]`` is the logprob of
  id ``[i, j]`` at prompt position ``i + 1``; 0.0 where the request had -1. Rows before
  the first one that names an id are not scored (the decoder starts there).
- ``prompt_alt_tokens``: ``PromptAltTokens`` of two dense ``[len(prompt) - 1, k]``
  tensors: row ``i`` holds ``k`` independent draws, with replacement, from the
  distribution at position ``i + 1`` at the request's temperature (0: the argmax, k
  times; ``top_k``/``top_p`` do not filter them: the SDK documents only the
  temperature), reproducible with ``SamplingParams.seed`` and independent of the
  sampled sequences' draws; ``logprobs`` are the model's temperature-1 logprobs of them.

The work is bounded as the service bounds it: a top-k width or ``prompt_alt_tokens_k``
above the vocabulary size, or ``len(prompt) × k`` (``× distinct ids`` for targets)
above ``MAX_PROMPT_SCORES``, is refused with an ``InvalidPromptError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from tinker import types
from tinker.types.topk_logprobs import MASK_LOGPROB, TopkLogprobs

from tinkerkit.backends.engine import Decoder
from tinkerkit.backends.sampler import log_softmax, top_k_rows
from tinkerkit.errors import InvalidPromptError

MAX_PROMPT_SCORES = 1 << 20
"""The most cells one prompt-side field may ask for: len(prompt) × k, or len(prompt) ×
distinct ids for ``target_prompt_logprobs`` (2**20 = 1,048,576)."""


def check_topk(name: str, k: int, vocab_size: int) -> None:
    """Refuse a negative top-k width or one wider than the vocabulary."""
    if k < 0:
        raise InvalidPromptError(f"{name} must be 0 or greater, got {k}.")
    if k > vocab_size:
        raise InvalidPromptError(
            f"{name}={k} is more than the model's vocabulary of {vocab_size} tokens; "
            f"ask for at most {vocab_size}."
        )


def _check_cost(name: str, length: int, width: int, what: str) -> None:
    if length * width > MAX_PROMPT_SCORES:
        raise InvalidPromptError(
            f"{name} asks for len(prompt) × {what} = {length} × {width} = {length * width} "
            f"scores, over the limit of {MAX_PROMPT_SCORES}; shorten the prompt or ask for "
            "fewer."
        )


@dataclass(frozen=True)
class _Targets:
    """``target_prompt_logprobs`` as CSR over either layout: ``ids[crow[r]:crow[r + 1]]``
    are row r's cells (a dense tensor is CSR with every cell listed)."""

    ids: np.ndarray  # int64 (cells,), -1: nothing requested
    crow: np.ndarray  # int64 (rows + 1,)
    request: types.TensorData

    def first_row(self) -> int:
        named = np.flatnonzero(self.ids >= 0)
        return int(np.searchsorted(self.crow, named[0], side="right")) - 1

    def result(self, values: np.ndarray) -> types.TensorData:
        shape = list(self.request.shape or [])
        if self.request.sparse_crow_indices is None:
            return types.TensorData(data=values.reshape(shape), dtype="float32", shape=shape)
        return types.TensorData(
            data=values,
            dtype="float32",
            shape=shape,
            sparse_crow_indices=list(self.request.sparse_crow_indices),
            sparse_col_indices=list(self.request.sparse_col_indices or []),
        )


def _targets(tensor: types.TensorData, length: int, vocab_size: int) -> _Targets:
    name = "target_prompt_logprobs"
    shape = list(tensor.shape or [])
    rows, cols = shape
    if rows != length - 1:
        raise InvalidPromptError(
            f"{name} has {rows} rows; a prompt of {length} tokens needs exactly "
            f"len(prompt) - 1 = {length - 1} (row i scores prompt position i + 1)."
        )
    values = np.asarray(tensor.data, dtype=np.int64)
    if tensor.sparse_crow_indices is None:
        if values.size != rows * cols:
            raise InvalidPromptError(f"{name} has {values.size} values for shape {shape}.")
        crow = np.arange(rows + 1, dtype=np.int64) * cols
    else:
        crow = np.asarray(tensor.sparse_crow_indices, dtype=np.int64)
        col = np.asarray(tensor.sparse_col_indices or [], dtype=np.int64)
        if (
            crow.shape != (rows + 1,)
            or crow[0] != 0
            or np.any(np.diff(crow) < 0)
            or crow[-1] != values.size
            or col.size != values.size
            or (col.size and (col.min() < 0 or col.max() >= cols))
        ):
            raise InvalidPromptError(
                f"{name} is not a valid sparse CSR tensor of shape {shape} (crow_indices "
                f"needs {rows + 1} non-decreasing offsets from 0 to the {values.size} values, "
                f"col_indices one column below {cols} per value)."
            )
    bad = values[(values < -1) | (values >= vocab_size)]
    if bad.size:
        raise InvalidPromptError(
            f"{name} names token id {int(bad[0])}, outside the vocabulary of {vocab_size} "
            "tokens; use -1 for cells that request nothing."
        )
    distinct = np.unique(values[values >= 0]).size
    if distinct == 0:
        raise InvalidPromptError(
            f"{name} names no token id (every cell is -1); name at least one, or leave it out."
        )
    _check_cost(name, length, distinct, "distinct ids")
    return _Targets(values, crow, tensor)


@dataclass(frozen=True)
class PromptRequests:
    """The checked prompt-side fields of one sample request (``check_prompt_requests``)."""

    topk: int
    last_n: int | None
    targets: _Targets | None
    alt_k: int
    temperature: float
    seed: int | None

    def wanted(self) -> bool:
        return bool(self.topk or self.targets is not None or self.alt_k)


def check_prompt_requests(
    prompt: Sequence[int],
    vocab_size: int,
    params: types.SamplingParams,
    *,
    topk_prompt_logprobs: int,
    target_prompt_logprobs: types.TensorData | None,
    prompt_alt_tokens_k: int,
    prompt_logprobs_last_n: int | None,
) -> PromptRequests:
    """Refuse what the service would (``InvalidPromptError``), before any work.

    Example:
        >>> req = check_prompt_requests([1, 2, 3], 261, types.SamplingParams(),
        ...     topk_prompt_logprobs=2, target_prompt_logprobs=None,
        ...     prompt_alt_tokens_k=0, prompt_logprobs_last_n=None)
        >>> req.topk
        2
    """
    length = len(prompt)
    check_topk("topk_prompt_logprobs", topk_prompt_logprobs, vocab_size)
    check_topk("prompt_alt_tokens_k", prompt_alt_tokens_k, vocab_size)
    _check_cost("topk_prompt_logprobs", length, topk_prompt_logprobs, "k")
    _check_cost("prompt_alt_tokens_k", length, prompt_alt_tokens_k, "k")
    targets = None
    if target_prompt_logprobs is not None:
        targets = _targets(target_prompt_logprobs, length, vocab_size)
    return PromptRequests(
        topk=topk_prompt_logprobs,
        last_n=prompt_logprobs_last_n,
        targets=targets,
        alt_k=prompt_alt_tokens_k,
        temperature=params.temperature,
        seed=params.seed,
    )


@dataclass(frozen=True)
class PromptScores:
    topk: TopkLogprobs | None = None
    target: types.TensorData | None = None
    alt_tokens: types.PromptAltTokens | None = None


def _distributions(
    decoder_factory: Callable[[Sequence[int], int], Decoder],
    prompt: Sequence[int],
    start: int,
    prefill: Callable[[Sequence[int]], Iterator[np.ndarray]] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(position p, temperature-1 logprobs (vocab,) of prompt[p] given prompt[:p]).

    With ``prefill`` (an engine's ``next_token_logprobs``) one forward pass gives every
    position; otherwise the decoder steps through the prompt a token at a time."""
    if prefill is not None:
        position = 1
        for block in prefill(prompt[:-1]):
            for row in np.asarray(block, dtype=np.float64):
                if position >= start:
                    yield position, row
                position += 1
        return
    decoder = decoder_factory(prompt[:start], 1)
    for position in range(start, len(prompt)):
        if position > start:
            decoder.step(np.asarray([prompt[position - 1]], dtype=np.int64))
        yield position, log_softmax(np.asarray(decoder.logits, dtype=np.float64)[:1])[0]


def _alternatives(
    logprobs: np.ndarray, k: int, temperature: float, rng: np.random.Generator
) -> np.ndarray:
    if temperature <= 0:
        return np.full(k, int(logprobs.argmax()), dtype=np.int64)
    cumulative = np.cumsum(np.exp(log_softmax(logprobs / temperature)))
    drawn = np.searchsorted(cumulative, rng.random(k) * cumulative[-1], side="right")
    return np.minimum(drawn, logprobs.size - 1).astype(np.int64)


def score_prompt(
    decoder_factory: Callable[[Sequence[int], int], Decoder],
    prompt: Sequence[int],
    requests: PromptRequests,
    prefill: Callable[[Sequence[int]], Iterator[np.ndarray]] | None = None,
) -> PromptScores:
    """Top-k rows, target logprobs and alternative draws for ``prompt``, in one pass."""
    length = len(prompt)
    if not requests.wanted():
        return PromptScores()
    k, alt_k, targets = requests.topk, requests.alt_k, requests.targets
    topk_from = length - requests.last_n if requests.last_n is not None else 1
    starts = [topk_from if k else length, 1 if alt_k else length]
    if targets is not None:
        starts.append(targets.first_row() + 1)
    start = max(1, min(starts))

    top_ids = np.zeros((length, k), dtype=np.int32)
    top_lps = np.full((length, k), MASK_LOGPROB, dtype=np.float32)
    target_lps = np.zeros(targets.ids.size if targets else 0, dtype=np.float32)
    alt_ids = np.zeros((length - 1, alt_k), dtype=np.int64)
    alt_lps = np.zeros((length - 1, alt_k), dtype=np.float32)
    # Its own stream, so asking for alternatives never changes the sampled sequences.
    rng = np.random.default_rng(np.random.SeedSequence(requests.seed, spawn_key=(1,)))
    if start < length:
        for position, lp in _distributions(decoder_factory, prompt, start, prefill):
            if k and position >= topk_from:
                ids, values = top_k_rows(lp[None], k)
                top_ids[position], top_lps[position] = ids[0], values[0]
            if targets is not None:
                cells = slice(targets.crow[position - 1], targets.crow[position])
                ids64 = targets.ids[cells]
                target_lps[cells] = np.where(ids64 >= 0, lp[np.maximum(ids64, 0)], 0.0)
            if alt_k:
                drawn = _alternatives(lp, alt_k, requests.temperature, rng)
                alt_ids[position - 1], alt_lps[position - 1] = drawn, lp[drawn]
    return PromptScores(
        topk=TopkLogprobs(token_ids=top_ids, logprobs=top_lps) if k else None,
        target=targets.result(target_lps) if targets is not None else None,
        alt_tokens=(
            types.PromptAltTokens(
                tokens=types.TensorData.from_numpy(alt_ids),
                logprobs=types.TensorData.from_numpy(alt_lps),
            )
            if alt_k
            else None
        ),
    )
