"""Length bucketing and the batched forward pass of the ``local`` engine.

Datums of very different lengths are sorted and grouped into buckets whose padded
size stays within ``MAX_WASTE`` of their real tokens, so little compute goes to
padding. Padding is on the right and the model is causal, so real positions never
see it: no attention mask is needed and results are exact. The unembedding runs on
real positions only, which matters most for large vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tinkerkit.backends.engine import EngineInput
from tinkerkit.backends.local.threads import Shape, fit
from tinkerkit.rules.images import Picture

MAX_WASTE = 1.25
"""A bucket's padded tokens stay within this factor of its real tokens."""
MAX_BUCKET_TOKENS = {"cpu": 4096, "cuda": 32768}
"""Padded tokens per bucket: on CPU larger buckets ran slower per token (cache misses);
a GPU wants large ones to stay busy."""
MAX_LOGIT_BYTES = 1 << 30
"""Cap on one bucket's float32 logits, which bounds buckets for large vocabularies."""


def bucket_cap(dev: torch.device, vocab: int) -> int:
    """Most padded tokens in one bucket on ``dev`` for a model with ``vocab`` tokens.

    Example:
        >>> bucket_cap(torch.device("cpu"), 261)
        4096
    """
    cap = MAX_BUCKET_TOKENS.get(dev.type, MAX_BUCKET_TOKENS["cuda"])
    return max(1, min(cap, MAX_LOGIT_BYTES // (4 * vocab)))


def buckets(lengths: Sequence[int], max_tokens: int = 4096) -> list[list[int]]:
    """Group datum indices (longest first) into buckets cheap to pad.

    Example:
        >>> buckets([3, 17, 64, 5])
        [[2], [1], [3, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        if current:
            width = lengths[current[0]]  # the longest: sorted descending
            padded = width * (len(current) + 1)
            if padded <= MAX_WASTE * (real + n) and padded <= max_tokens:
                current.append(i)
                real += n
                continue
            groups.append(current)
        current, real = [i], n
    if current:
        groups.append(current)
    return groups


@dataclass
class Bucket:
    """One padded sub-batch: its datum indices and the flat logprobs of its real tokens."""

    indices: list[int]
    lengths: list[int]
    ks: list[int]
    """Per datum: K of its (T, K) targets, 0 for (T,) targets."""
    logprobs: torch.Tensor  # (sum(lengths),) or (sum(lengths), max(ks)), in `indices` order


def _pad(
    batch: Sequence[EngineInput], indices: list[int], dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    width = max(len(batch[i].tokens) for i in indices)
    ks = [batch[i].targets.shape[1] if batch[i].targets.ndim == 2 else 0 for i in indices]
    k = max(ks)
    tokens = np.zeros((len(indices), width), dtype=np.int64)
    targets = np.zeros((len(indices), width, k) if k else (len(indices), width), dtype=np.int64)
    mask = np.zeros((len(indices), width), dtype=bool)
    for row, i in enumerate(indices):
        n = len(batch[i].tokens)
        tokens[row, :n] = batch[i].tokens
        if not k:
            targets[row, :n] = batch[i].targets
        elif ks[row]:
            targets[row, :n, : ks[row]] = batch[i].targets
        else:  # a (T,) datum in a bucket with (T, K) ones: slot 0
            targets[row, :n, 0] = batch[i].targets
        mask[row, :n] = True
    as_tensor = torch.from_numpy
    return (
        as_tensor(tokens).to(dev),
        as_tensor(targets).to(dev),
        as_tensor(mask).to(dev),
        ks,
    )


def target_logprobs(
    trunk: nn.Module,
    head: nn.Module,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    shape: Shape,
    pictures: Sequence[Sequence[Picture]] = (),
) -> torch.Tensor:
    """Flat float32 log p(target) at the ``mask`` positions of right-padded ``tokens``:
    (M,) for targets (B, T), (M, K) for targets (B, T, K) — each of the K against the
    full vocabulary (not renormalised over the K). ``shape`` sizes the threads of each
    phase (``threads.fit``); ``pictures`` (per row) go to a vision trunk."""
    fit(tokens.numel() * shape.trunk)
    images = {"pictures": pictures} if any(pictures) else {}
    hidden = trunk(input_ids=tokens, use_cache=False, **images).last_hidden_state
    fit(int(mask.sum()) * shape.head)
    logits = head(hidden[mask]).float()
    picked_targets = targets[mask]
    if picked_targets.ndim == 1:
        picked = logits.gather(-1, picked_targets.unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1)
    return logits.gather(-1, picked_targets) - torch.logsumexp(logits, dim=-1, keepdim=True)


def prefix_logprobs(
    trunk: nn.Module,
    head: nn.Module,
    tokens: Sequence[int],
    vocab: int,
    dev: torch.device,
    shape: Shape,
    pictures: Sequence[Picture] = (),
) -> Iterator[np.ndarray]:
    """Full next-token log-softmax after every prefix of ``tokens``: one trunk pass, the
    unembedding in chunks that keep each (rows, vocab) block within ``MAX_LOGIT_BYTES``."""
    ids = torch.tensor([list(tokens)], dtype=torch.long, device=dev)
    rows = bucket_cap(dev, vocab)
    images = {"pictures": [pictures]} if pictures else {}
    with torch.inference_mode():
        fit(len(tokens) * shape.trunk)
        hidden = trunk(input_ids=ids, use_cache=False, **images).last_hidden_state[0]
        fit(min(rows, hidden.shape[0]) * shape.head)
        for start in range(0, hidden.shape[0], rows):
            logits = head(hidden[start : start + rows]).float()
            yield torch.log_softmax(logits, dim=-1).cpu().numpy()


def each_bucket(
    trunk: nn.Module,
    head: nn.Module,
    batch: Sequence[EngineInput],
    vocab: int,
    dev: torch.device,
    shape: Shape,
    before: Callable[[list[int]], list[int]] | None = None,
) -> Iterator[Bucket]:
    """Forward every bucket of ``batch``, one at a time (graphs are kept when grad mode
    is on): a caller that runs each bucket's backward before taking the next keeps one
    bucket's graph in memory, not all of them. ``before`` (optional) sees each bucket's
    datum indices first and gives them back in the order the bucket's rows take."""
    lengths = [len(item.tokens) for item in batch]
    for indices in buckets(lengths, bucket_cap(dev, vocab)):
        if before is not None:
            indices = before(indices)
        tokens, targets, mask, ks = _pad(batch, indices, dev)
        pictures = [batch[i].pictures for i in indices]
        lp = target_logprobs(trunk, head, tokens, targets, mask, shape, pictures)
        yield Bucket(indices, [lengths[i] for i in indices], ks, lp)


def part(flat: np.ndarray, start: int, n: int, k: int) -> np.ndarray:
    """One datum's logprobs from a bucket's flat (M,) or (M, K) array."""
    rows = flat[start : start + n]
    if flat.ndim == 1:
        return rows
    return rows[:, :k] if k else rows[:, 0]


class LocalForward:
    """``ForwardPass`` of the local engine: per-datum logprobs, backward on request."""

    def __init__(
        self,
        found: list[Bucket],
        size: int,
        trainable: bool,
        run: Callable[[Callable[[], None]], None],
        shape: Shape,
    ) -> None:
        self._shape = shape
        self._run = run
        """Where the backward pass runs (the engine's compute thread)."""
        self._buckets = found
        self._trainable = trainable
        self._done = False
        self.logprobs: list[np.ndarray] = [np.empty(0, np.float32)] * size
        for bucket in found:
            flat = bucket.logprobs.detach().float().cpu().numpy()
            start = 0
            for i, n, k in zip(bucket.indices, bucket.lengths, bucket.ks, strict=True):
                self.logprobs[i] = part(flat, start, n, k).copy()
                start += n

    def backward(self, dlogprobs: Sequence[np.ndarray]) -> None:
        """Add d(loss)/d(LoRA) to the LoRA ``.grad`` buffers (sums across calls)."""
        if not self._trainable:
            raise RuntimeError("this engine has no LoRA weights to train")
        if self._done:
            raise RuntimeError("backward was already called on this forward pass")
        if len(dlogprobs) != len(self.logprobs):
            raise ValueError(f"expected {len(self.logprobs)} gradients, got {len(dlogprobs)}")
        outputs, grads = [], []
        for bucket in self._buckets:
            if not bucket.logprobs.requires_grad:
                raise RuntimeError("forward ran with grad=False; run it with grad=True")
            grad = np.zeros(tuple(bucket.logprobs.shape), dtype=np.float32)
            start = 0
            for i, n, k in zip(bucket.indices, bucket.lengths, bucket.ks, strict=True):
                d = np.asarray(dlogprobs[i], dtype=np.float32)
                expected = self.logprobs[i].shape
                if d.size != self.logprobs[i].size:
                    raise ValueError(f"gradient {i} has shape {d.shape}, expected {expected}")
                part(grad, start, n, k)[...] = d.reshape(expected)
                start += n
            outputs.append(bucket.logprobs)
            grads.append(torch.from_numpy(grad).to(bucket.logprobs.device))
        # One call over every bucket: autograd adds into the existing .grad buffers.
        tokens = sum(sum(b.lengths) for b in self._buckets)
        shape = self._shape

        def backward() -> None:
            fit(tokens * max(shape.trunk, shape.head))
            torch.autograd.backward(outputs, grads)

        self._run(backward)
        self._done = True
        self._buckets = []  # free the graphs
