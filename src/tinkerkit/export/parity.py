"""Parity check: does the exported model score tokens as the backend's sampler does?

Both sides get the same token ids; ours is a plain ``transformers`` forward,
``log_softmax`` and a gather, theirs is ``sampling_client.compute_logprobs``. On the
offline ``local`` backend (float32) the two agree to ~1e-6; against the service,
whose kernels run in bf16, differences of ~1e-2 are normal: pass a matching ``atol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tinker import types

from tinkerkit.export.convert import ADAPTER_CONFIG, load_adapter
from tinkerkit.export.errors import ExportError
from tinkerkit.export.inference import load_for_inference
from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.protocols import SamplingClientLike

DEFAULT_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Q: What is 12 + 30? A: 42",
    "def add(a, b):\n    return a + b\n",
)


@dataclass(frozen=True)
class VerifyReport:
    """How far the exported model's per-token logprobs are from the backend's."""

    max_abs_diff: float
    mean_abs_diff: float
    n_tokens: int
    ok: bool
    atol: float = 1e-3

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (
            f"{verdict}: max |Δlogprob| {self.max_abs_diff:.3g}, mean {self.mean_abs_diff:.3g} "
            f"over {self.n_tokens} tokens (tolerance {self.atol:g})"
        )


def token_logprobs(model: Any, tokens: Sequence[int]) -> list[float]:
    """log p(token_t | tokens_<t) for t = 1..T-1 under ``model`` (one forward pass).

    Example:
        >>> token_logprobs(model, [72, 105, 33])
        [-5.1, -4.7]
    """
    device = next(model.parameters()).device
    ids = torch.tensor([list(tokens)], dtype=torch.long, device=device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].to(torch.float32)
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return [float(x) for x in logprobs.cpu()]


def verify(
    exported: str | Path | Any,
    sampling_client: SamplingClientLike,
    sequences: Sequence[str | Sequence[int]] | None = None,
    *,
    base: str | Path | None = None,
    atol: float = 1e-3,
) -> VerifyReport:
    """Compare per-token logprobs of ``exported`` with ``sampling_client.compute_logprobs``.

    ``exported`` is a merged model folder, a PEFT adapter folder (then ``base`` is the
    base model; default: the adapter config's), or a loaded model. ``sequences`` are
    strings (tokenized by the sampler's tokenizer) or token-id lists; by default three
    short texts.

    Example:
        >>> report = verify("merged/", sampling_client)
        >>> report.ok, report.max_abs_diff
        (True, 2.4e-07)
    """
    model = _as_model(exported, base)
    seqs = _token_lists(sequences or DEFAULT_TEXTS, sampling_client)
    # Submit every request before waiting on any: one round trip, not one per sequence.
    futures = [sampling_client.compute_logprobs(types.ModelInput.from_ints(s)) for s in seqs]
    diffs: list[float] = []
    for seq, future in zip(seqs, futures, strict=True):
        theirs = future.result()
        ours = token_logprobs(model, seq)
        for mine, ref in zip(ours, theirs[1:], strict=True):
            if ref is not None:
                diffs.append(abs(mine - float(ref)))
    if not diffs:
        raise ExportError("verify compared no tokens: pass sequences of at least 2 tokens.")
    worst = max(diffs)
    return VerifyReport(worst, sum(diffs) / len(diffs), len(diffs), worst <= atol, atol)


def _as_model(exported: Any, base: str | Path | None) -> Any:
    if not isinstance(exported, str | Path):
        return exported
    path = Path(exported)
    if (path / ADAPTER_CONFIG).is_file():
        base = base or load_adapter(path).config.get("base_model_name_or_path")
        if not base:
            raise ExportError(f"{path} is an adapter: pass base=... (the model it was trained on).")
        return load_for_inference(base, adapter=path)[0]
    return load_for_inference(path)[0]


def _token_lists(
    sequences: Sequence[str | Sequence[int]], sampling_client: SamplingClientLike
) -> list[list[int]]:
    tokenizer = None
    out: list[list[int]] = []
    for seq in sequences:
        if isinstance(seq, str):
            tokenizer = tokenizer or tokenizer_of(sampling_client)
            out.append(list(tokenizer.encode(seq, add_special_tokens=True)))
        else:
            out.append([int(t) for t in seq])
        if len(out[-1]) < 2:
            raise ExportError(f"sequence {seq!r} has fewer than 2 tokens; nothing to score.")
    return out
