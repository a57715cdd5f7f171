"""Preference-learning settings (``DPOConfig``), their checks, and what defines a run.

config = tk.preference.DPOConfig(data="pairs.jsonl", beta=0.1, log_dir="runs/dpo")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinkerkit.train.run_options import RunOptions, run_identity_of

Objective = Literal["dpo", "bradley_terry"]


@dataclass
class DPOConfig(RunOptions):
    """Preference-learning settings (``log_path=``, the cookbook's name, for ``log_dir``)."""

    data: str | Path | Sequence[Any]
    """Preference pairs: a JSONL/JSON/CSV file, or the records themselves."""
    objective: Objective = "dpo"
    """dpo trains the policy; bradley_terry trains a reward model."""
    reference: str | None = None
    """DPO reference: a tinker:// sampler path (default: the base model)."""
    beta: float = 0.1
    epochs: int = 1
    batch_size: int = 8
    """Pairs per step."""
    learning_rate: float = 1e-5
    eval_data: str | Path | Sequence[Any] | None = None
    """Held-out pairs for evaluation rows in metrics.jsonl."""
    eval_split: float = 0.0
    """Fraction of the pairs held out for evaluation."""
    eval_every: int = 0
    pipeline_depth: int = 8
    log_dir: str | Path = field(default="runs/dpo", kw_only=True)


def run_identity(config: DPOConfig, source: str) -> dict[str, Any]:
    """What defines the run (the tokenized ``tokens`` is added once the tokenizer is known)."""
    return run_identity_of(
        config, "epochs", "batch_size", "beta", "reference", "objective", data=source
    )


def check_config(config: DPOConfig) -> None:
    """Refuse settings that cannot train, naming the field; called before anything is read."""
    from tinkerkit.errors import ConfigError  # here: tinkerkit.errors imports tinker

    for name in ("epochs", "batch_size", "rank", "pipeline_depth"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"DPOConfig.{name} must be a positive integer, got {value!r}")
    for name in ("beta", "learning_rate"):
        value = getattr(config, name)
        if not (isinstance(value, int | float) and 0 < value < float("inf")):
            raise ConfigError(f"DPOConfig.{name} must be a finite number > 0, got {value!r}")
    if not 0.0 <= config.eval_split < 1.0:
        raise ConfigError(f"DPOConfig.eval_split must be in [0, 1), got {config.eval_split!r}")
