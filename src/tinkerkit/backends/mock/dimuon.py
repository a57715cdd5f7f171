"""Dimuon in numpy, for the ``mock`` engine (the formula: ``backends/optimizers.py``).

Global-norm clipping, an EMA momentum per LoRA matrix, row/column preconditioning of
the momentum, its matrix sign by Newton-Schulz, a direction of Frobenius norm
sqrt(rank), and a rank-corrected learning rate. Everything runs in float32 with the
same operations, in the same order, as ``local/dimuon.py``.
"""

from __future__ import annotations

import math

import numpy as np
from tinker import types

from tinkerkit.backends import optimizers as opt
from tinkerkit.backends.mock.adam import global_norm

_TINY = float(np.finfo(np.float32).tiny)


def precondition(m: np.ndarray, damping: float) -> np.ndarray:
    """``m`` with row i scaled by (r̂_i + damping)^(-1/4) and column j by (ĉ_j + damping)^(-1/4).

    r̂ and ĉ are the row and column mean squares of ``m`` divided by its overall mean
    square, so the scaling does not depend on the size of the gradients.
    """
    q = m * m
    mean = max(float(q.mean()), _TINY)
    rows = q.mean(axis=1, keepdims=True) / mean
    cols = q.mean(axis=0, keepdims=True) / mean
    return m * (rows + damping) ** -0.25 * (cols + damping) ** -0.25


def newton_schulz(p: np.ndarray) -> np.ndarray:
    """The matrix sign (polar factor U Vᵀ) of ``p`` by the iterations of ``opt.NS_STEPS``."""
    x = p / (float(np.linalg.norm(p)) + opt.NORM_EPS)
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the wide orientation: the Gram matrix is the small one
        x = x.T
    for a, b, c in opt.NS_STEPS:
        g = x @ x.T
        x = a * x + (b * g + c * (g @ g)) @ x
    return x.T if tall else x


def direction(m: np.ndarray, rank: int, damping: float = opt.DEFAULT_DAMPING) -> np.ndarray:
    """The update direction for momentum ``m``: Frobenius norm sqrt(rank) (0 for m = 0)."""
    o = newton_schulz(precondition(m, damping))
    return o * (math.sqrt(rank) / (float(np.linalg.norm(o)) + opt.NORM_EPS))


class Dimuon:
    """Dimuon over named float32 LoRA matrices, updated in place.

    Example:
        >>> dimuon = Dimuon(rank=8)
        >>> dimuon.step(params, grads, types.DimuonParams(learning_rate=0.05))["learning_rate"]
        0.05
    """

    name = opt.DIMUON

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.step_count = 0
        self.m: dict[str, np.ndarray] = {}

    def step(
        self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], hp: opt.StepParams
    ) -> dict[str, float]:
        """Update ``params`` in place from ``grads``; returns ``grad_norm`` (before
        clipping) and ``learning_rate``."""
        if not isinstance(hp, types.DimuonParams):
            raise opt.OptimizerParamsError(self.name, hp)
        damping, exponent = opt.dimuon_settings(hp)
        norm = global_norm(grads)
        keep = (1.0 - hp.beta1) * opt.clip_scale(norm, hp.grad_clip_norm)
        lr = hp.learning_rate * opt.rank_lr_factor(self.rank, exponent)
        self.step_count += 1
        for key, p in params.items():
            m = self.m.get(key)
            if m is None:
                m = self.m[key] = np.zeros_like(p)
            m *= hp.beta1
            m += keep * grads[key]
            p -= lr * direction(m.reshape(len(m), -1), self.rank, damping).reshape(p.shape)
        return {"grad_norm": norm, "learning_rate": hp.learning_rate}

    def state(self) -> dict[str, np.ndarray]:
        out = {"step": np.array([self.step_count], dtype=np.int64)}
        out.update({f"m/{key}": m.copy() for key, m in self.m.items()})
        return opt.tag_state(self.name, out)

    def load(self, state: dict[str, np.ndarray]) -> None:
        state = opt.check_state(self.name, state)
        self.step_count = int(np.asarray(state["step"]).reshape(-1)[0])
        self.m = {k[2:]: v.astype(np.float32, copy=True) for k, v in state.items() if k[:2] == "m/"}
