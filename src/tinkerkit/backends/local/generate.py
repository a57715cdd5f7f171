"""Continuous batching: the sample requests on one base decode together.

A ``Lane`` holds every sequence being generated on one base (any of its adapters with
LoRA on the same modules) in a single left-padded KV cache. Each round, requests that
arrived join (their prompt runs once, through their own model, and its cache is repeated
``num_samples`` times), every row draws its next token by its own request's rules and
generator (``sampling``), rows that finished leave, and one batched forward pass feeds
the drawn tokens, each row through its own LoRA (``multi_lora.routed``). Rows carry their
own positions and an attention mask over the padding, so a row's numbers are those it
would get alone.
"""

from __future__ import annotations

import secrets
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tinker import types
from tinker.types.topk_logprobs import TopkLogprobs
from transformers.cache_utils import DynamicCache, DynamicLayer

from tinkerkit.backends.engine import SampleJob
from tinkerkit.backends.local import sampling
from tinkerkit.backends.local.decode import cache_arg, cache_of
from tinkerkit.backends.local.multi_lora import Routing, routed
from tinkerkit.backends.local.threads import Shape, fit


class Generation:
    """A ``SampleJob`` being decoded: its rows' progress, its generator, its future."""

    def __init__(self, job: SampleJob) -> None:
        self.job = job
        self.model = 0
        """Which of its lane's models the request samples from."""
        self.future: Future[list[types.SampledSequence]] = Future()
        seed = job.params.seed if job.params.seed is not None else secrets.randbits(63)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rule = sampling.Rule(job.params.temperature, job.params.top_k, job.params.top_p)
        self.rows = [_Row() for _ in range(job.num_samples)]
        self.open = job.num_samples

    def stops(self, row: _Row) -> bool:
        """Whether ``row``'s last token ends it by the job's stop rule."""
        job = self.job
        if row.tokens[-1] in job.stop_tokens:
            return True
        if not job.stop_strings:
            return False
        text = job.decode(row.tokens)
        return any(text.endswith(s) for s in job.stop_strings)

    def finish_row(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.future.done():
            self.future.set_result(self.result())

    def result(self) -> list[types.SampledSequence]:
        ids = self.job.sequence_ids
        return [row.sequence(sid, self.job.topk) for row, sid in zip(self.rows, ids, strict=True)]


@dataclass
class _Row:
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_ids: list[np.ndarray] = field(default_factory=list)
    top_lps: list[np.ndarray] = field(default_factory=list)
    reason: types.StopReason | None = None

    def sequence(self, sequence_id: str, k: int) -> types.SampledSequence:
        top = None
        if k:
            ids = np.stack(self.top_ids) if self.top_ids else np.zeros((0, k), np.int32)
            lps = np.stack(self.top_lps) if self.top_lps else np.zeros((0, k), np.float32)
            top = TopkLogprobs(token_ids=ids.astype(np.int32), logprobs=lps.astype(np.float32))
        return types.SampledSequence(
            stop_reason=self.reason or "length",
            sequence_id=sequence_id,
            tokens_np=np.asarray(self.tokens, dtype=np.int32),
            logprobs_np=np.asarray(self.logprobs, dtype=np.float32),
            topk_logprobs_np=top,
        )


CHUNK_LOGITS = 1 << 22
"""Rows are unembedded and drawn in chunks of about this many logits (27 rows at a
151,936-token vocabulary: 16 MB of float32), so the logits a draw reads several times
stay in cache."""


class _Drawn:
    """One round's draw for every row: tokens, logprobs, top-k ids and logprobs."""

    def __init__(self, rows: int, k: int) -> None:
        self.tokens = np.zeros(rows, dtype=np.int64)
        self.logprobs = np.zeros(rows, dtype=np.float32)
        self.top_ids = np.zeros((rows, k), dtype=np.int64)
        self.top_values = np.zeros((rows, k), dtype=np.float32)

    def put(self, rows: slice | np.ndarray, tokens: torch.Tensor, logprobs: torch.Tensor) -> None:
        """The draw of ``rows`` (a range or row numbers)."""
        self.tokens[rows] = tokens.cpu().numpy()
        self.logprobs[rows] = logprobs.cpu().numpy()


def batchable(lm: Any, device: torch.device) -> bool:
    """Whether ``lm``'s cache is the plain per-layer kind rows can be padded and merged in
    (not a sliding-window or recurrent one)."""
    ids = torch.zeros((1, 1), dtype=torch.long, device=device)
    with torch.inference_mode():
        cache = cache_of(lm.get_decoder()(input_ids=ids, use_cache=True))
    layers = list(getattr(cache, "layers", None) or [])
    return (
        isinstance(cache, DynamicCache)
        and bool(layers)
        and all(type(layer) is DynamicLayer for layer in layers)
    )


class Lane:
    """The sequences being generated on one base, decoded as one batch. Rows of other
    adapters on the base (LoRA on the same modules) run through the first model's tree
    with each row's own LoRA (``multi_lora.routed``).

    Example:
        >>> lane = Lane(lm, torch.device("cpu"), shape)
        >>> lane.join(generation, lm)
        >>> while lane.busy: lane.round()
    """

    def __init__(self, lm: Any, device: torch.device, shape: Shape) -> None:
        self.lm = lm
        self.trunk = lm.get_decoder()
        self.head = lm.get_output_embeddings()
        self._models: list[Any] = [lm]  # the lead first; a row's model by index
        self._routing = Routing()
        self.device = device
        self.shape = shape
        self._cache_arg = cache_arg(self.trunk)
        self._waiting: list[Generation] = []
        self._owners: list[tuple[Generation, int]] = []  # per row: (request, sample index)
        self._cache: Any = None  # one DynamicCache for all rows, left-padded
        self._mask = torch.zeros((0, 0), dtype=torch.long, device=device)
        self._positions = torch.zeros(0, dtype=torch.long, device=device)
        self._hidden: torch.Tensor | None = None  # (rows, hidden): the last position's
        self._rows_by: Any = None  # ``_layout``'s cache

    @property
    def busy(self) -> bool:
        return bool(self._waiting or self._owners)

    def join(self, request: Generation, lm: Any = None) -> None:
        """Queue ``request`` (on ``lm``, by default the lane's own model); it starts at the
        next ``round``."""
        lm = self.lm if lm is None else lm
        for index, model in enumerate(self._models):
            if model is lm:
                request.model = index
                break
        else:
            request.model = len(self._models)
            self._models.append(lm)
        self._waiting.append(request)

    def fail(self, exc: BaseException) -> None:
        """Fail every request in the lane (the lane is empty afterwards)."""
        requests = {id(r): r for r, _ in self._owners} | {id(r): r for r in self._waiting}
        for request in requests.values():
            if not request.future.done():
                request.future.set_exception(exc)
        self._waiting, self._owners, self._cache, self._hidden = [], [], None, None
        self._rows_by = None

    def round(self) -> None:
        """Admit waiting requests, draw one token for every row, feed the survivors."""
        with torch.inference_mode():
            groups: dict[int, list[Generation]] = {}
            for request in self._waiting:
                if request.future.cancelled() or request.job.budget <= 0:
                    if not request.future.done():
                        request.future.set_result(request.result())
                    continue
                groups.setdefault(request.model, []).append(request)
            self._waiting = []
            for model, requests in groups.items():
                self._admit(model, requests)
            if not self._owners:
                return
            drawn = self._draw()
            keep = self._record(drawn)
            self._advance(drawn, keep)

    def _admit(self, model: int, requests: list[Generation]) -> None:
        """Run the prompts of ``requests`` (all on model ``model``) in one left-padded pass
        and add each one's rows, its cache repeated ``num_samples`` times."""
        prompts = [list(r.job.prompt) for r in requests]
        width = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), width), dtype=torch.long, device=self.device)
        mask = torch.zeros((len(prompts), width), dtype=torch.long, device=self.device)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, device=self.device)
            mask[row, width - len(prompt) :] = 1
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        fit(int(mask.numel()) * self.shape.trunk)
        out = self._models[model].get_decoder()(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True
        )
        cache = cache_of(out)
        repeats = torch.tensor([r.job.num_samples for r in requests], device=self.device)
        padding = (mask == 0)[:, None, :, None]
        for layer in cache.layers:  # padding's keys and values: zeros, never NaN
            layer.keys = layer.keys.masked_fill(padding, 0).repeat_interleave(repeats, dim=0)
            layer.values = layer.values.masked_fill(padding, 0).repeat_interleave(repeats, dim=0)
        hidden = out.last_hidden_state[:, -1].repeat_interleave(repeats, dim=0)
        mask = mask.repeat_interleave(repeats, dim=0)
        positions = lengths.repeat_interleave(repeats)
        if not self._owners:
            self._cache, self._mask, self._positions, self._hidden = cache, mask, positions, hidden
        else:
            assert self._hidden is not None
            width = max(self._mask.shape[1], width)
            for layer, joining in zip(self._cache.layers, cache.layers, strict=True):
                layer.keys = _cat_left(layer.keys, joining.keys, width)
                layer.values = _cat_left(layer.values, joining.values, width)
            self._mask = _cat_left(self._mask, mask, width)
            self._positions = torch.cat([self._positions, positions])
            self._hidden = torch.cat([self._hidden, hidden])
        self._owners.extend((r, i) for r in requests for i in range(r.job.num_samples))
        self._rows_by = None

    def _layout(
        self,
    ) -> tuple[list[tuple[Generation, np.ndarray]], dict[sampling.Rule, np.ndarray]]:
        """The rows by request (each request's rows are consecutive: (request, sample
        indices)) and by rule (row numbers); rebuilt only when rows join or leave."""
        if self._rows_by is None:
            spans: list[tuple[Generation, list[int]]] = []
            rules: dict[sampling.Rule, list[int]] = {}
            for row, (request, i) in enumerate(self._owners):
                if spans and spans[-1][0] is request:
                    spans[-1][1].append(i)
                else:
                    spans.append((request, [i]))
                rules.setdefault(request.rule, []).append(row)
            self._rows_by = (
                [(r, np.asarray(ix)) for r, ix in spans],
                {rule: np.asarray(rows) for rule, rows in rules.items()},
            )
        return self._rows_by

    def _draw(self) -> _Drawn:
        """The next token of every row, each request by its own rule and generator; the
        unembedding and the draw run over chunks of rows whose logits stay in cache."""
        assert self._hidden is not None
        rows = self._hidden.shape[0]
        spans, rules = self._layout()
        # One uniform per sample of a request every step, finished ones included, so a
        # sample's draws do not depend on when the others stop.
        picks = np.concatenate(
            [
                torch.rand(r.job.num_samples, generator=r.generator, dtype=torch.float64).numpy()[
                    samples
                ]
                for r, samples in spans
            ]
        )
        uniforms = torch.from_numpy(picks).to(self.device)
        k = max(r.job.topk for r, _ in spans)
        out = _Drawn(rows, k)
        step = max(1, CHUNK_LOGITS // max(1, self.shape.vocab))
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            logits = self._unembed(start, stop)
            for rule, members in rules.items():
                if len(rules) == 1:
                    tokens, logprobs = sampling.draw(logits, rule, uniforms[start:stop])
                    out.put(slice(start, stop), tokens, logprobs)
                    continue
                inside = members[(members >= start) & (members < stop)]
                if not len(inside):
                    continue
                index = torch.from_numpy(inside - start).to(self.device)
                tokens, logprobs = sampling.draw(logits[index], rule, uniforms[start:stop][index])
                out.put(inside, tokens, logprobs)
            if k:
                top_ids, top_values = sampling.top_logprobs(logits, k)
                out.top_ids[start:stop] = top_ids.cpu().numpy()
                out.top_values[start:stop] = top_values.cpu().numpy()
        return out

    def _record(self, drawn: _Drawn) -> list[int]:
        """Append each row's token (and logprobs); finish rows and requests; the rows kept."""
        keep = []
        for row, (request, i) in enumerate(self._owners):
            state = request.rows[i]
            state.tokens.append(int(drawn.tokens[row]))
            state.logprobs.append(float(drawn.logprobs[row]))
            if request.job.topk:
                state.top_ids.append(drawn.top_ids[row, : request.job.topk].astype(np.int32))
                state.top_lps.append(drawn.top_values[row, : request.job.topk])
            if request.stops(state):
                state.reason = "stop"
            elif len(state.tokens) < request.job.budget and not request.future.cancelled():
                keep.append(row)
                continue
            request.finish_row()
        return keep

    def _advance(self, drawn: _Drawn, keep: list[int]) -> None:
        """Keep the ``keep`` rows and run one step on their drawn tokens."""
        if not keep:
            self._owners, self._cache, self._hidden, self._rows_by = [], None, None, None
            return
        tokens = torch.from_numpy(drawn.tokens).to(self.device)
        if len(keep) < len(self._owners):
            index = torch.tensor(keep, device=self.device)
            self._owners = [self._owners[row] for row in keep]
            self._rows_by = None
            mask = self._mask[index]
            live = int(mask.any(dim=0).nonzero()[0])  # columns before it are padding in all rows
            self._mask = mask[:, live:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[index, :, live:]
                layer.values = layer.values[index, :, live:]
            self._positions = self._positions[index]
            tokens = tokens[index]
        mask = torch.cat([self._mask, torch.ones_like(self._mask[:, :1])], dim=1)
        fit(len(tokens) * self.shape.trunk)
        with self._routed(0, len(tokens)):
            out = self.trunk(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=mask,
                position_ids=self._positions.unsqueeze(-1),
                use_cache=True,
                **{self._cache_arg: self._cache},
            )
        self._cache = cache_of(out)
        self._mask = mask
        self._positions = self._positions + 1
        self._hidden = out.last_hidden_state[:, -1]

    def _unembed(self, start: int, stop: int) -> torch.Tensor:
        """float32 logits (rows, vocab) of rows ``start:stop``'s last hidden states; the
        threads are sized for the vocabulary-wide work that follows (the draw)."""
        assert self._hidden is not None
        fit((stop - start) * self.shape.head)
        with self._routed(start, stop):
            return self.head(self._hidden[start:stop]).float()

    def _routed(self, start: int, stop: int) -> AbstractContextManager[None]:
        """Each of rows ``start:stop`` through its own model's LoRA, where the rows are
        not all the lead's."""
        owners = [request.model for request, _ in self._owners[start:stop]]
        if not any(owners):
            return nullcontext()
        self._routing.set(owners, [1] * len(owners))
        return routed(self._models, self._routing)


def _cat_left(old: torch.Tensor, new: torch.Tensor, width: int) -> torch.Tensor:
    """``old`` and ``new`` stacked along rows, each left-padded with zeros to ``width``
    along dim 1 (a mask (rows, T)) or dim 2 (a cache tensor (rows, heads, T, dim))."""
    dim = 1 if old.dim() == 2 else 2

    def pad(t: torch.Tensor) -> torch.Tensor:
        missing = width - t.shape[dim]
        if not missing:
            return t
        shape = list(t.shape)
        shape[dim] = missing
        return torch.cat([t.new_zeros(shape), t], dim=dim)

    return torch.cat([pad(old), pad(new)])
