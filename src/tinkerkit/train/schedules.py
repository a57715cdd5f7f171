"""Learning-rate schedules: constant, linear decay, cosine decay, each with linear warmup."""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "linear", "cosine"]


def learning_rate(
    base: float, step: int, total_steps: int, schedule: Schedule = "constant", warmup_steps: int = 0
) -> float:
    """The learning rate for ``step`` (0-based) of ``total_steps``.

    Warmup rises linearly from ``base / warmup_steps`` to ``base``; ``linear`` and
    ``cosine`` then decay to 0 at the last step.

    Example:
        >>> learning_rate(1e-4, 0, 100, "cosine", warmup_steps=10)
        1e-05
    """
    if schedule not in ("constant", "linear", "cosine"):
        raise ValueError(f"lr schedule must be constant, linear or cosine, got {schedule!r}")
    if warmup_steps and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule == "constant":
        return base
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "linear":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))
