"""Dimuon in torch over the LoRA parameters (the formula: ``backends/optimizers.py``).

The same float32 operations, in the same order, as the numpy ``mock/dimuon.py``, so
both backends take the same step from the same gradients (to float32 rounding). The
momentum is kept in float32 whatever the parameters' dtype; its state goes out and back
in as flat numpy arrays ("optimizer", "step", "m/<key>") that round-trip exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tinker import types

from tinkerkit.backends import optimizers as opt

_TINY = torch.finfo(torch.float32).tiny


def precondition(m: torch.Tensor, damping: float) -> torch.Tensor:
    """``m`` with row i scaled by (r̂_i + damping)^(-1/4) and column j by (ĉ_j + damping)^(-1/4)."""
    q = m * m
    mean = q.mean().clamp_min(_TINY)
    rows = q.mean(dim=1, keepdim=True) / mean
    cols = q.mean(dim=0, keepdim=True) / mean
    return m * (rows + damping) ** -0.25 * (cols + damping) ** -0.25


def newton_schulz(p: torch.Tensor) -> torch.Tensor:
    """The matrix sign (polar factor U Vᵀ) of ``p`` by the iterations of ``opt.NS_STEPS``."""
    x = p / (torch.linalg.vector_norm(p) + opt.NORM_EPS)
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the wide orientation: the Gram matrix is the small one
        x = x.T
    for a, b, c in opt.NS_STEPS:
        g = x @ x.T
        x = a * x + (b * g + c * (g @ g)) @ x
    return x.T if tall else x


def direction(m: torch.Tensor, rank: int, damping: float = opt.DEFAULT_DAMPING) -> torch.Tensor:
    """The update direction for momentum ``m``: Frobenius norm sqrt(rank) (0 for m = 0)."""
    o = newton_schulz(precondition(m, damping))
    return o * (math.sqrt(rank) / (torch.linalg.vector_norm(o) + opt.NORM_EPS))


class LoraDimuon:
    """Dimuon on named parameters whose ``.grad`` buffers always exist.

    Example:
        >>> dimuon = LoraDimuon(params, rank=8)
        >>> dimuon.step(types.DimuonParams(learning_rate=0.05))["grad_norm"]
        0.0
    """

    name = opt.DIMUON

    def __init__(self, params: dict[str, torch.nn.Parameter], rank: int) -> None:
        self.params = params
        self.rank = rank
        self.step_count = 0
        self.m: dict[str, torch.Tensor] = {}

    def _grads(self) -> dict[str, torch.Tensor]:
        for p in self.params.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return {key: p.grad for key, p in self.params.items() if p.grad is not None}

    @torch.no_grad()
    def step(self, hp: opt.StepParams) -> dict[str, float]:
        """One Dimuon step with ``hp``; returns ``grad_norm`` (before clipping) and
        ``learning_rate``. Zeroes the gradients."""
        if not isinstance(hp, types.DimuonParams):
            raise opt.OptimizerParamsError(self.name, hp)
        damping, exponent = opt.dimuon_settings(hp)
        grads = self._grads()
        norms = [torch.linalg.vector_norm(g.float()) for g in grads.values()]
        norm = float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
        keep = (1.0 - hp.beta1) * opt.clip_scale(norm, hp.grad_clip_norm)
        lr = hp.learning_rate * opt.rank_lr_factor(self.rank, exponent)
        self.step_count += 1
        for key, p in self.params.items():
            g = grads[key].float()
            m = self.m.get(key)
            if m is None:
                m = self.m[key] = torch.zeros_like(g)
            m.mul_(hp.beta1)
            m.add_(keep * g)
            d = direction(m.reshape(len(m), -1), self.rank, damping).reshape(p.shape)
            p.sub_((lr * d).to(p.dtype))
            grads[key].zero_()
        return {"grad_norm": norm, "learning_rate": float(hp.learning_rate)}

    def state(self) -> dict[str, np.ndarray]:
        """The momentum as float32 numpy copies, ``step`` as int64, and the optimizer tag."""
        out = {"step": np.array([self.step_count], dtype=np.int64)}
        for key, m in self.m.items():
            out[f"m/{key}"] = m.detach().cpu().numpy().copy()
        return opt.tag_state(self.name, out)

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Replace the optimizer state with ``state`` (as ``state()`` gives it)."""
        state = opt.check_state(self.name, state)
        if "step" not in state:
            raise ValueError("optimizer state has no 'step' entry")
        unknown = {k for k in state if k != "step"} - {f"m/{key}" for key in self.params}
        if unknown:
            raise ValueError(f"optimizer state has entries for unknown tensors: {sorted(unknown)}")
        momentum: dict[str, torch.Tensor] = {}
        for key, p in self.params.items():
            m = state.get(f"m/{key}")
            if m is None:
                continue  # never stepped (a zero momentum)
            if tuple(m.shape) != tuple(p.shape):
                raise ValueError(
                    f"optimizer state m/{key}: shape {tuple(m.shape)} does not match "
                    f"{tuple(p.shape)}"
                )
            momentum[key] = torch.tensor(np.asarray(m), dtype=torch.float32, device=p.device)
        self.step_count = int(np.asarray(state["step"]).reshape(-1)[0])
        self.m = momentum
