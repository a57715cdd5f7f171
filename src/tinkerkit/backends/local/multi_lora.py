"""Several training clients' ``forward_backward`` in one pass over their shared base.

Clients on one base differ only in their LoRA tensors. So their datums go through one
batched forward of the first client's module tree (the base weights are the same
tensors), with each LoRA layer's adapter replaced, for the duration of the pass, by a
hook that adds every row's own client's ``B(A(x)) * scaling``. Each client's loss then
gives the gradients of its own rows, and one backward pass fills each client's LoRA
``.grad`` from its rows only: the numbers are those of separate passes, up to float
rounding, and the base matmuls run once for everyone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch
from peft.tuners.lora.layer import LoraLayer
from torch import nn

from tinkerkit.backends.engine import EngineInput
from tinkerkit.backends.local.batching import Bucket, each_bucket, part
from tinkerkit.backends.local.lora import ADAPTER
from tinkerkit.backends.local.threads import Shape, fit

Gradients = Callable[[int, np.ndarray], np.ndarray]
"""A client's loss, one datum at a time: (the datum's index in the client's batch, its
logprobs) in, d(loss)/d(logprobs) out."""


class Trainable(Protocol):
    """What a shared pass needs of an engine (``LocalEngine`` has it)."""

    model: nn.Module
    trunk: Any
    head: Any
    vocab: int
    device: torch.device
    shape: Shape
    params: dict[str, torch.nn.Parameter]
    family: tuple[int, tuple[str, ...]]
    """Engines of one family can share a pass: same base, LoRA on the same modules."""


@dataclass
class TrainJob:
    """One client's ``forward_backward``: its engine, datums and loss."""

    engine: Trainable
    batch: Sequence[EngineInput]
    gradients: Gradients
    future: Future[None] = field(default_factory=Future)


class Routing:
    """Which rows of the current bucket belong to which client (rows sorted by client)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int]] = []  # (client, start, stop) over batch rows
        self.flat: list[tuple[int, int, int]] = []  # the same over the real tokens, flattened

    def set(self, owners: Sequence[int], lengths: Sequence[int]) -> None:
        self.rows, self.flat = [], []
        row = flat = 0
        for owner, n in zip(owners, lengths, strict=True):
            if self.rows and self.rows[-1][0] == owner:
                c, start, _ = self.rows[-1]
                self.rows[-1] = (c, start, row + 1)
                c, fstart, _ = self.flat[-1]
                self.flat[-1] = (c, fstart, flat + n)
            else:
                self.rows.append((owner, row, row + 1))
                self.flat.append((owner, flat, flat + n))
            row, flat = row + 1, flat + n


@contextmanager
def routed(models: Sequence[nn.Module], routing: Routing) -> Iterator[None]:
    """Within the block, the LoRA layers of ``models[0]`` apply each row's own model's LoRA."""
    others = [_lora_layers(m) for m in models]
    hooks, layers = [], []
    for name, module in others[0].items():
        peers = [named[name] for named in others]
        layers.append(module)
        hooks.append(cast(nn.Module, module).register_forward_hook(_hook(peers, routing)))
        module._disable_adapters = True  # the hook adds every row's adapter instead
    try:
        yield
    finally:
        for module in layers:
            module._disable_adapters = False
        for hook in hooks:
            hook.remove()


_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[str, Any]] = weakref.WeakKeyDictionary()


def _lora_layers(model: nn.Module) -> dict[str, Any]:
    """``model``'s LoRA layers by module name (looked up once per model)."""
    found = _LAYERS.get(model)
    if found is None:
        found = _LAYERS[model] = {
            name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)
        }
    return found


def _hook(peers: list[Any], routing: Routing) -> Callable[..., torch.Tensor]:
    def add_adapters(
        module: nn.Module, args: tuple[Any, ...], output: torch.Tensor
    ) -> torch.Tensor:
        x = args[0]
        spans = routing.rows if x.dim() == 3 else routing.flat
        parts = []
        for owner, start, stop in spans:
            layer = peers[owner]
            a, b = layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]
            part = x[start:stop].to(a.weight.dtype)
            parts.append(b(a(part)) * layer.scaling[ADAPTER])
        return output + torch.cat(parts).to(output.dtype)

    return add_adapters


def run_together(jobs: Sequence[TrainJob]) -> None:
    """One forward and one backward for ``jobs`` (one ``family``), bucket by bucket: each
    bucket's backward runs before the next bucket's forward, so memory holds one
    bucket's graph. Each job's future settles; a job whose loss raises fails alone and
    its gradients are put back as they were (the others still train)."""
    lead = jobs[0].engine
    batch = [item for job in jobs for item in job.batch]
    owners = [j for j, job in enumerate(jobs) for _ in job.batch]
    firsts = np.cumsum([0] + [len(job.batch) for job in jobs])
    routing = Routing()
    saved = [
        {k: p.grad.detach().clone() for k, p in job.engine.params.items() if p.grad is not None}
        for job in jobs
    ]
    failed: dict[int, BaseException] = {}

    def before(indices: list[int]) -> list[int]:
        ordered = sorted(indices, key=lambda i: owners[i])  # stable: a client's rows together
        routing.set([owners[i] for i in ordered], [len(batch[i].tokens) for i in ordered])
        return ordered

    def gradient_of(bucket: Bucket) -> torch.Tensor:
        flat = bucket.logprobs.detach().float().cpu().numpy()
        grad = np.zeros(flat.shape, dtype=np.float32)
        start = 0
        for i, n, k in zip(bucket.indices, bucket.lengths, bucket.ks, strict=True):
            owner = owners[i]
            if owner not in failed:
                lp = part(flat, start, n, k).copy()
                try:
                    d = np.asarray(jobs[owner].gradients(i - int(firsts[owner]), lp), np.float32)
                    if d.size != lp.size:
                        raise ValueError(f"gradient has shape {d.shape}, expected {lp.shape}")
                    part(grad, start, n, k)[...] = d.reshape(lp.shape)
                except BaseException as exc:  # this client's loss failed: it adds nothing
                    failed[owner] = exc
            start += n
        return torch.from_numpy(grad).to(bucket.logprobs.device)

    try:
        # One client needs no routing: its own LoRA layers run as they are.
        route = routed([j.engine.model for j in jobs], routing) if len(jobs) > 1 else nullcontext()
        with torch.enable_grad(), route:
            shape = lead.shape
            for bucket in each_bucket(
                lead.trunk, lead.head, batch, lead.vocab, lead.device, shape, before
            ):
                grad = gradient_of(bucket)
                fit(sum(bucket.lengths) * max(shape.trunk, shape.head))
                torch.autograd.backward(bucket.logprobs, grad)
    except BaseException as exc:
        failed.update({j: exc for j in range(len(jobs)) if j not in failed})
    for j, job in enumerate(jobs):
        if j in failed:
            _restore(job.engine.params, saved[j])
            job.future.set_exception(failed[j])
        else:
            job.future.set_result(None)


def _restore(params: dict[str, torch.nn.Parameter], grads: dict[str, torch.Tensor]) -> None:
    """Put the gradients back as they were before a pass that failed."""
    with torch.no_grad():
        for key, p in params.items():
            if key in grads and p.grad is not None:
                p.grad.copy_(grads[key])
            elif p.grad is not None:
                p.grad.zero_()
