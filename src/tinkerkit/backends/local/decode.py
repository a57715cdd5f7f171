"""Incremental decoding with the model's KV cache: the prompt once, then one token a step."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def cache_arg(lm: nn.Module) -> str:
    """The name ``forward`` takes the KV cache by: ``cache`` (transformers >= 5.2x) or the
    older ``past_key_values`` (which newer versions still accept, with a warning)."""
    params = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class LocalDecoder:
    """``n`` continuations of one prompt; ``logits`` (n, vocab) are for the next token.

    The prompt is run once (batch 1) and its KV cache repeated ``n`` times; each
    ``step`` then feeds one token per continuation, reusing the cache.

    Example:
        >>> dec = LocalDecoder(lm, [1, 2, 3], n=2, device=torch.device("cpu"))
        >>> dec.step(dec.logits.argmax(-1))
    """

    def __init__(
        self,
        lm: nn.Module,
        prompt: Sequence[int],
        n: int,
        device: torch.device,
        run: Callable[[Callable[[], Any]], Any] | None = None,
        images: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self._run = run or (lambda fn: fn())
        """Where each step runs (the engine's compute thread)."""
        if len(prompt) == 0:
            raise ValueError("the prompt must have at least one token")
        self._lm = lm
        self._device = device
        self._cache_arg = cache_arg(lm)
        ids = torch.tensor([list(prompt)], dtype=torch.long, device=device)
        extra, delta = images if images is not None else ({}, None)
        # a VL prompt's images and 3-D positions; later tokens continue from its offset
        self._offset = None if delta is None else int(delta.reshape(-1)[0])
        self._fed = len(prompt)
        with torch.inference_mode():
            out = lm(input_ids=ids, use_cache=True, logits_to_keep=1, **extra)
        self._cache: Any = cache_of(out)
        if n > 1:
            self._cache.batch_repeat_interleave(n)
        row = out.logits[0, -1].float().cpu().numpy().astype(np.float64)
        self.logits: np.ndarray = np.repeat(row[None, :], n, axis=0)

    def step(self, tokens: np.ndarray) -> None:
        """Feed one token per continuation (int (n,)) and update ``logits``."""
        ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=self._device)[:, None]

        def run() -> None:
            with torch.inference_mode():
                kwargs = {self._cache_arg: self._cache}
                if self._offset is not None:
                    at = self._fed + self._offset
                    kwargs["position_ids"] = torch.full((3, len(ids), 1), at, device=ids.device)
                out = self._lm(input_ids=ids, use_cache=True, **kwargs)
            self._cache = cache_of(out)
            self._fed += 1
            self.logits = out.logits[:, -1].float().cpu().numpy().astype(np.float64)

        self._run(run)
