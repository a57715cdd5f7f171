"""Preference-learning settings (``DPOConfig``): their checks, and what defines a run.

config = tk.preference.DPOConfig(data="pairs.jsonl", beta=0.1, log_dir="runs/dpo")
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tinkerkit.train.run_options import MAX_STEPS, Records, RunOptions, log_dir_field

Objective = Literal["dpo", "bradley_terry"]


class DPOConfig(RunOptions):
    """Preference-learning settings (``log_path=``, the cookbook's name, for ``log_dir``).

    The run's identity adds the pairs' fingerprint, and the tokenized ``tokens`` once known."""

    identity_fields = ("epochs", "batch_size", "beta", "reference", "objective")

    data: Records
    """Preference pairs: a JSONL/JSON/CSV file, or the records themselves."""
    objective: Objective = "dpo"
    """dpo trains the policy; bradley_terry trains a reward model."""
    reference: str | None = None
    """DPO reference: a tinker:// sampler path (default: the base model)."""
    beta: float = Field(default=0.1, gt=0)
    epochs: int = Field(default=1, ge=1, le=MAX_STEPS)
    batch_size: int = Field(default=8, ge=1)
    """Pairs per step."""
    learning_rate: float = Field(default=1e-5, gt=0)
    eval_data: Records | None = None
    """Held-out pairs for evaluation rows in metrics.jsonl."""
    eval_split: float = Field(default=0.0, ge=0, le=0.99)
    """Fraction of the pairs held out for evaluation."""
    eval_every: int = Field(default=0, ge=0)
    pipeline_depth: int = Field(default=8, ge=1)
    log_dir: str | Path = log_dir_field("runs/dpo")
