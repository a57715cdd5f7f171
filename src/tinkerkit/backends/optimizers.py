"""Which optimizer an offline engine trains with, and the constants of its Dimuon.

As on the service, the optimizer is chosen once, when the training client is created
(``optimizer=types.AdamOptimizerConfig()``, the default, or
``types.DimuonOptimizerConfig()``), and every ``optim_step`` passes that family's
hyperparameters (``types.AdamParams`` or ``types.DimuonParams``). This module holds
those rules and the state tag, so the numpy (``mock/dimuon.py``) and torch
(``local/dimuon.py``) implementations cannot drift apart on them.

The offline Dimuon step, per LoRA matrix (formula and status in docs/backends.md,
"Optimizers")::

    s  = min(1, clip / (‖g‖_global + 1e-6))        (clip <= 0: s = 1)
    M ← beta1 · M + (1 - beta1) · s · g
    P  = M ⊙ (r̂ + damping)^(-1/4) ⊙ (ĉ + damping)^(-1/4)ᵀ      r̂, ĉ: row / column mean
                                                   squares of M over their mean
    O  = NewtonSchulz(P / (‖P‖_F + NORM_EPS))      ≈ the polar factor U Vᵀ of P
    W ← W - lr · (32 / rank)^DEFAULT_RANK_LR_EXPONENT · sqrt(rank) · O / (‖O‖_F + NORM_EPS)

Example:
    >>> optimizer_name(types.DimuonOptimizerConfig())
    'dimuon'
    >>> check_step_params(None, types.AdamParams(learning_rate=1e-4)).learning_rate
    0.0001
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
from tinker import types
from tinker.types.optimizer import OptimizerConfigBase, OptimParamsBase

from tinkerkit.errors import OptimizerParamsError as OptimizerParamsError
from tinkerkit.errors import OptimizerStateMismatchError as OptimizerStateMismatchError
from tinkerkit.errors import RequestError
from tinkerkit.errors import UnknownOptimizerError as UnknownOptimizerError

__all__ = [
    "ADAMW",
    "DIMUON",
    "SUPPORTED",
    "OptimizerParamsError",
    "OptimizerStateMismatchError",
    "StepParams",
    "UnknownOptimizerError",
    "check_state",
    "check_step_params",
    "clip_scale",
    "dimuon_settings",
    "normalized_config",
    "optimizer_name",
    "rank_lr_factor",
    "tag_state",
]

ADAMW = "adamw"
DIMUON = "dimuon"
SUPPORTED = (ADAMW, DIMUON)

_CONFIG: dict[str, type[OptimizerConfigBase]] = {
    ADAMW: types.AdamOptimizerConfig,
    DIMUON: types.DimuonOptimizerConfig,
}

StepParams = types.AdamParams | types.DimuonParams
"""What an engine's ``optim_step`` takes: the hyperparameters of its optimizer family."""

# --- Dimuon's internal constants ---------------------------------------------------------

NS_STEPS: tuple[tuple[float, float, float], ...] = ((3.4445, -4.7750, 2.0315),) * 5 + (
    (1.5, -0.5, 0.0),
) * 5
"""Newton-Schulz coefficients (a, b, c) per iteration: X ← a·X + (b·G + c·G²)·X, G = X Xᵀ.

Five quintic steps with the coefficients of Muon (Jordan et al., 2024) lift small singular
values quickly; five cubic steps (the classic 3/2, -1/2 iteration) then converge every
singular value to 1, so the result is the polar factor U Vᵀ to float32 precision rather
than Muon's approximate one (singular values in about [0.7, 1.2]). A fixed count keeps
the step deterministic and equal on numpy and torch."""

NORM_EPS = 1e-7
"""Added to the Frobenius norms the step divides by (before and after Newton-Schulz)."""

DEFAULT_DAMPING = 1e-4
"""Added to the row and column mean squares (each relative to their mean, so 1 is a
typical row) before the -1/4 power: caps how much a near-empty row or column is boosted
(at most damping^(-1/4) = 10x). Same default as ``damping`` in later tinker SDKs."""

RANK_REFERENCE = 32
DEFAULT_RANK_LR_EXPONENT = 0.175
"""The learning rate is multiplied by (32 / rank) ** 0.175 (rank 8: 1.27, rank 128: 0.785).
Same default as ``rank_lr_correction_exponent`` in later tinker SDKs."""

CLIP_EPS = 1e-6
"""Global-norm clipping scale ``clip / (norm + 1e-6)``, as torch's ``clip_grad_norm_``."""

STATE_KEY = "optimizer"
"""Optimizer-state entry naming the family (uint8 bytes of "adamw" / "dimuon")."""


def clip_scale(norm: float, clip: float) -> float:
    """The factor global-norm clipping multiplies every gradient by (1 = not clipped)."""
    return clip / (norm + CLIP_EPS) if clip > 0 and norm > clip else 1.0


def rank_lr_factor(rank: int, exponent: float = DEFAULT_RANK_LR_EXPONENT) -> float:
    """The rank correction of Dimuon's learning rate: ``(32 / rank) ** exponent``."""
    return float((RANK_REFERENCE / rank) ** exponent)


def dimuon_settings(params: types.DimuonParams) -> tuple[float, float]:
    """``(damping, rank_lr_correction_exponent)`` for a step: the internal defaults, or
    the fields themselves where a newer ``DimuonParams`` carries them."""
    damping = float(getattr(params, "damping", DEFAULT_DAMPING))
    exponent = float(getattr(params, "rank_lr_correction_exponent", DEFAULT_RANK_LR_EXPONENT))
    return damping, exponent


# --- creation and steps ------------------------------------------------------------------


def normalized_config(config: types.OptimizerConfig | None) -> types.OptimizerConfig:
    """The typed config for ``config`` (``None`` = AdamW); refuses anything unsupported.

    A bare ``OptimizerConfigBase(type=...)`` is read as its family's config, so extra or
    wrong fields are refused rather than ignored.

    Example:
        >>> normalized_config(None)
        AdamOptimizerConfig(type='adamw')
    """
    if config is None:
        return types.AdamOptimizerConfig()
    if not isinstance(config, OptimizerConfigBase):
        raise TypeError(
            "optimizer takes types.AdamOptimizerConfig() or types.DimuonOptimizerConfig(), "
            f"not {type(config).__name__}"
        )
    cls = _CONFIG.get(config.type)
    if cls is None:
        raise UnknownOptimizerError(config, f"unknown type {config.type!r}")
    if isinstance(config, cls):
        return config
    try:
        return cls.model_validate(config.model_dump())
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        raise UnknownOptimizerError(config, problems) from None


def optimizer_name(config: types.OptimizerConfig | None) -> str:
    """``"adamw"`` or ``"dimuon"`` for a creation-time config (``None`` = AdamW)."""
    return normalized_config(config).type


def check_step_params(config: types.OptimizerConfig | str | None, params: object) -> StepParams:
    """``params`` if they belong to the optimizer chosen at creation; refused otherwise.

    ``config`` is the creation-time config (or its name). A bare
    ``OptimParamsBase(type="dimuon", ...)`` is read as ``DimuonParams``.
    """
    name = config if isinstance(config, str) else optimizer_name(config)
    if name == ADAMW and isinstance(params, types.AdamParams):
        return params
    if name == DIMUON and isinstance(params, types.DimuonParams):
        return params
    if name == DIMUON and isinstance(params, OptimParamsBase) and params.type == DIMUON:
        try:
            return types.DimuonParams.model_validate(params.model_dump())
        except pydantic.ValidationError as e:
            raise RequestError(f"Invalid Dimuon parameters: {e}") from None
    raise OptimizerParamsError(name, params)


# --- state -------------------------------------------------------------------------------


def tag_state(name: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` with the entry that names its optimizer family."""
    state[STATE_KEY] = np.frombuffer(name.encode(), dtype=np.uint8).copy()
    return state


def check_state(name: str, state: dict[str, Any]) -> dict[str, np.ndarray]:
    """``state`` without its tag, if it belongs to the optimizer ``name``.

    State saved before optimizers were tagged has no tag and is AdamW's.
    """
    tag = state.get(STATE_KEY)
    saved = (
        ADAMW if tag is None else bytes(np.asarray(tag, dtype=np.uint8)).decode(errors="replace")
    )
    if saved != name:
        raise OptimizerStateMismatchError(saved, name)
    return {k: v for k, v in state.items() if k != STATE_KEY}
