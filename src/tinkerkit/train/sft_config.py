"""SFT settings (``Config``), their checks, and what defines an SFT run on resume.

config = tk.sft.Config(data="chats.jsonl", epochs=1, log_dir="runs/a")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinkerkit.train.run_options import RunOptions, run_identity_of

if TYPE_CHECKING:  # light at run time: the CLI builds its options from this Config
    from tinkerkit.data.chat import TrainOn
    from tinkerkit.train.schedules import Schedule


@dataclass
class Config(RunOptions):
    """SFT settings; defaults from the guide's hyperparameter table.

    ``log_path=`` (the cookbook's name) is accepted for ``log_dir``."""

    data: str | Path | Sequence[Any]
    """Chats: a JSONL/JSON/CSV file, or the records themselves."""
    epochs: int = 3
    batch_size: int = 8
    """Examples per step."""
    learning_rate: float = 1e-4
    lr_schedule: Schedule = "constant"
    warmup_steps: int = 0
    """Steps of linear warmup before the schedule."""
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    train_on: TrainOn = "last"
    """Which assistant turns are trained on: the last one, or all of them."""
    max_length: int | None = None
    """Longest example in tokens (longer ones are refused; default: no limit)."""
    eval_data: str | Path | Sequence[Any] | None = None
    """Held-out chats for evaluation rows in metrics.jsonl."""
    eval_split: float = 0.0
    eval_every: int = 0
    """Evaluate every K steps (0: only at the end) when there is eval data."""
    sample_prompts: Sequence[str] = ()
    sample_every: int = 0
    sample_max_tokens: int = 64
    save_each_epoch: bool = True
    pipeline_depth: int = 8
    log_dir: str | Path = field(default="runs/sft", kw_only=True)


def check_config(config: Config) -> None:
    """Refuse settings that cannot train, naming the field; called before anything is read."""
    from tinkerkit.errors import ConfigError  # here: tinkerkit.errors imports tinker

    for name in ("epochs", "batch_size", "rank", "pipeline_depth"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"Config.{name} must be a positive integer, got {value!r}")
    if not 0 < config.learning_rate < float("inf"):
        raise ConfigError(
            f"Config.learning_rate must be a finite number > 0, got {config.learning_rate!r}"
        )
    if not 0.0 <= config.eval_split < 1.0:
        raise ConfigError(f"Config.eval_split must be in [0, 1), got {config.eval_split!r}")
    for name in ("eval_every", "sample_every", "save_every", "warmup_steps"):
        if getattr(config, name) < 0:
            raise ConfigError(f"Config.{name} must be >= 0, got {getattr(config, name)!r}")


def run_identity(config: Config, source: str) -> dict[str, Any]:
    """What defines the run: resuming with any of these changed is refused. ``data``
    fingerprints the records as given; the tokenized ``tokens`` is added once known."""
    return run_identity_of(config, "epochs", "batch_size", "train_on", data=source)
