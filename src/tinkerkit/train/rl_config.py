"""The RL loop's settings: their checks, and what defines a run (checked on resume).

config = Config(prompts="prompts.jsonl", reward=my_reward, steps=100)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, AliasPath, Field, model_validator

from tinkerkit.train.run_options import MAX_STEPS, Records, RunOptions, log_dir_field

# The names of ``tinkerkit.train.rl_batch.LOSSES`` and ``rl_rewards.OnRewardError``,
# here too: those modules import tinker and numpy.
Loss = Literal["importance_sampling", "ppo", "reinforce"]
OnRewardError = Literal["zero", "skip"]

MAX_REWARD_TIMEOUT_S = 3600.0
"""The longest ``reward_timeout``, seconds: an hour per reward call; far more would
overflow the timers that enforce it."""


class Config(RunOptions):
    """RL settings; defaults from the guide's hyperparameter table (lr 1e-5, 4 samples).

    The cookbook's names are accepted too: ``log_path`` (``log_dir``),
    ``load_checkpoint_path`` (``init_state``), ``kl_penalty_coef`` (``kl_coef``),
    ``loss_fn`` (``loss``) and ``loss_fn_config={"clip_low_threshold": ...,
    "clip_high_threshold": ...}`` (``clip_low``/``clip_high``). The run's identity adds
    the prompts' fingerprint."""

    identity_fields = ("group_size", "batch_size", "loss", "refresh_every", "init_state")

    prompts: Records
    reward: Callable[..., Any]
    init_state: str | None = Field(
        default=None, validation_alias=AliasChoices("init_state", "load_checkpoint_path")
    )
    """Start the policy from a ``tinker://.../weights/`` checkpoint (e.g. an SFT run's)."""
    group_size: int = Field(default=4, ge=1)
    """Samples per prompt."""
    batch_size: int = Field(default=8, ge=1)
    """Prompts per step."""
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    """Steps to run (default: ``epochs`` over the prompts)."""
    epochs: int = Field(default=1, ge=1, le=MAX_STEPS)
    learning_rate: float = Field(default=1e-5, gt=0)
    max_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    stop: Sequence[str] | Sequence[int] | None = None
    loss: Loss = Field(
        default="importance_sampling", validation_alias=AliasChoices("loss", "loss_fn")
    )
    clip_low: float = Field(
        default=0.8,
        validation_alias=AliasChoices(
            "clip_low", AliasPath("loss_fn_config", "clip_low_threshold")
        ),
    )
    clip_high: float = Field(
        default=1.2,
        validation_alias=AliasChoices(
            "clip_high", AliasPath("loss_fn_config", "clip_high_threshold")
        ),
    )
    scale_advantages: bool = False
    kl_coef: float = Field(
        default=0.0, ge=0, validation_alias=AliasChoices("kl_coef", "kl_penalty_coef")
    )
    """KL penalty to the base model."""
    refresh_every: int = Field(default=1, ge=1)
    """Steps per sampler refresh."""
    recompute_logprobs: bool = False
    reward_timeout: float = Field(default=30.0, gt=0, le=MAX_REWARD_TIMEOUT_S)
    """Seconds a reward call may take."""
    reward_concurrency: int = Field(default=64, ge=1)
    on_reward_error: OnRewardError = "zero"
    log_samples_every: int = Field(default=10, ge=0)
    log_samples: int = Field(default=4, ge=0)
    log_dir: str | Path = log_dir_field("runs/rl")

    @model_validator(mode="after")
    def _checkpoints_on_refresh_steps(self) -> Self:
        # A resumed run starts with a fresh sampler; that matches the uninterrupted run
        # only if checkpoints fall on refresh steps.
        if self.save_every % self.refresh_every:
            raise ValueError(
                f"Config.save_every ({self.save_every}) must be a multiple of "
                f"Config.refresh_every ({self.refresh_every}) so a resumed run samples from "
                "the same weights"
            )
        return self


def public_config(config: Config) -> dict[str, Any]:
    """The shared JSON-safe config, plus the reward's name and a prompt-list summary."""
    from tinkerkit.train.session import public_config as session_public_config

    out = session_public_config(config)
    out["reward"] = getattr(config.reward, "__qualname__", type(config.reward).__qualname__)
    if not isinstance(config.prompts, str | Path):
        out["prompts"] = f"<{len(config.prompts)} prompts in memory>"
    out["stop"] = list(config.stop) if config.stop is not None else None
    return out
