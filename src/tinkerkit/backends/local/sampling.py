"""The service's sampling rules in torch, where the logits are.

The same rules as the shared numpy sampler (``backends/sampler.py``): temperature 0 is
greedy (the first maximum); otherwise ``softmax(logits / temperature)``, then the
``top_k`` filter (keeps every token at least as likely as the k-th, ties included), then
the ``top_p`` filter (keeps a token while the mass of the strictly more likely ones,
ties broken by the lower id, is below ``top_p``), renormalised, and one inverse-CDF draw
per row from a uniform. The logprob reported for a drawn token is the model's own
(temperature 1, unfiltered); top-k logprobs are in descending order, ties by the lower
id. Only the drawn tokens and their logprobs leave the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Rule:
    """The drawing part of ``SamplingParams``: rows with equal rules draw together."""

    temperature: float
    top_k: int
    top_p: float


BLOCK = 256
"""Tokens per block of the two-level inverse-CDF search (a block, then a token in it)."""


def draw(
    logits: torch.Tensor, rule: Rule, uniforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of ``logits`` (R, vocab) by ``rule``, with ``uniforms`` (R,) in
    [0, 1): (tokens (R,), their temperature-1 logprobs (R,)).

    An unfiltered draw reads the logits twice (max, then exp and block sums) and never
    builds the cumulative distribution of the whole vocabulary.

    Example:
        >>> draw(torch.tensor([[0.0, 9.0]]), Rule(0.0, -1, 1.0), torch.zeros(1))[0]
        tensor([1])
    """
    vocab = logits.shape[-1]
    if rule.temperature <= 0:
        tokens = logits.argmax(dim=-1)
        return tokens, chosen_logprobs(logits, tokens)
    if 0 < rule.top_k < vocab or rule.top_p < 1.0:
        tokens = _filtered(logits, rule, uniforms)
        return tokens, chosen_logprobs(logits, tokens)
    top = logits.max(dim=-1, keepdim=True).values
    weights = torch.exp((logits - top) / rule.temperature)
    tokens = _search(weights, uniforms)
    if rule.temperature == 1.0:
        lse = top.squeeze(-1) + weights.sum(dim=-1).log()
        return tokens, logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse
    return tokens, chosen_logprobs(logits, tokens)


def _search(weights: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The first index whose cumulative weight reaches ``u`` × the row's total weight."""
    rows, vocab = weights.shape
    full = vocab // BLOCK
    sums = weights[:, : full * BLOCK].reshape(rows, full, BLOCK).sum(dim=-1)
    if vocab % BLOCK:
        sums = torch.cat([sums, weights[:, full * BLOCK :].sum(dim=-1, keepdim=True)], dim=1)
    before = sums.double().cumsum(dim=-1)
    target = uniforms.to(before.device, torch.float64).unsqueeze(-1) * before[:, -1:]
    block = torch.searchsorted(before, target).clamp_(max=sums.shape[1] - 1)
    start = block * BLOCK
    offsets = torch.arange(BLOCK, device=weights.device)
    columns = (start + offsets).clamp_(max=vocab - 1)
    inside = weights.gather(-1, columns).double()
    inside = torch.where(start + offsets < vocab, inside, torch.zeros_like(inside))
    base = torch.where(block > 0, before.gather(-1, (block - 1).clamp(min=0)), 0.0)
    within = torch.searchsorted(base + inside.cumsum(dim=-1), target).clamp_(max=BLOCK - 1)
    return (start + within).squeeze(-1).clamp_(max=vocab - 1)


def _filtered(logits: torch.Tensor, rule: Rule, uniforms: torch.Tensor) -> torch.Tensor:
    """A draw after the ``top_k`` and ``top_p`` filters."""
    probs = torch.softmax(logits / rule.temperature, dim=-1)
    vocab = probs.shape[-1]
    if 0 < rule.top_k < vocab:
        kth = probs.topk(rule.top_k, dim=-1, sorted=True).values[:, -1:]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    if rule.top_p < 1.0:
        ordered, order = probs.sort(dim=-1, descending=True, stable=True)
        total = ordered.sum(dim=-1, keepdim=True)
        before = ordered.cumsum(dim=-1) - ordered
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep.scatter_(-1, order, before < rule.top_p * total)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    cdf = probs.cumsum(dim=-1)
    # The index of the first cumulative mass >= u * total: the numpy rule's count(cdf < u).
    target = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target).squeeze(-1).clamp_(max=vocab - 1)


def chosen_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) at temperature 1 per row: (R,) float32."""
    lse = torch.logsumexp(logits, dim=-1)
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse


def top_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most likely tokens per row at temperature 1, descending, ties by the lower
    id: (ids (R, k), logprobs (R, k))."""
    logprobs = torch.log_softmax(logits, dim=-1)
    values, ids = logprobs.topk(k, dim=-1, sorted=True)
    # topk's order among equal values is unspecified: where the k-th value is shared,
    # take those rows from a stable full sort instead.
    tied = (logprobs >= values[:, -1:]).sum(dim=-1) > k
    tied |= (values[:, 1:] == values[:, :-1]).any(dim=-1)
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(-1)
        sorted_values, order = logprobs[rows].sort(dim=-1, descending=True, stable=True)
        values[rows], ids[rows] = sorted_values[:, :k], order[:, :k]
    return ids, values
