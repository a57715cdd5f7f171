"""SFT settings (``Config``): their checks, and what defines an SFT run on resume.

config = tk.sft.Config(data="chats.jsonl", epochs=1, log_dir="runs/a")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from tinkerkit.train.run_options import MAX_STEPS, Records, RunOptions, log_dir_field
from tinkerkit.train.schedules import Schedule

TrainOn = Literal["last", "all_assistant"]
"""``tinkerkit.data.chat.TrainOn``, here too: that module imports tinker."""


class Config(RunOptions):
    """SFT settings; defaults from the guide's hyperparameter table.

    ``log_path=`` (the cookbook's name) is accepted for ``log_dir``. The run's identity
    adds the records' fingerprint (``data``), and the tokenized ``tokens`` once known."""

    identity_fields = ("epochs", "batch_size", "train_on")

    data: Records
    """Chats: a JSONL/JSON/CSV file, or the records themselves."""
    epochs: int = Field(default=3, ge=1, le=MAX_STEPS)
    batch_size: int = Field(default=8, ge=1)
    """Examples per step."""
    learning_rate: float = Field(default=1e-4, gt=0)
    lr_schedule: Schedule = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    """Steps of linear warmup before the schedule."""
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip_norm: float = Field(default=0.0, ge=0)
    train_on: TrainOn = "last"
    """Which assistant turns are trained on: the last one, or all of them."""
    max_length: int | None = Field(default=None, ge=1)
    """Longest example in tokens (longer ones are refused; default: no limit)."""
    eval_data: Records | None = None
    """Held-out chats for evaluation rows in metrics.jsonl."""
    eval_split: float = Field(default=0.0, ge=0, le=0.99)
    eval_every: int = Field(default=0, ge=0)
    """Evaluate every K steps (0: only at the end) when there is eval data."""
    sample_prompts: Sequence[str] = ()
    sample_every: int = Field(default=0, ge=0)
    sample_max_tokens: int = Field(default=64, ge=1)
    save_each_epoch: bool = True
    pipeline_depth: int = Field(default=8, ge=1)
    log_dir: str | Path = log_dir_field("runs/sft")
