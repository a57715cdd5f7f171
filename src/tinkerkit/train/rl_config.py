"""The RL loop's settings, their checks, and what defines a run (checked on resume).

config = Config(prompts="prompts.jsonl", reward=my_reward, steps=100)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinkerkit.train.run_options import RunOptions, resolve_alias, run_identity_of

if TYPE_CHECKING:  # light at run time: the CLI builds its options from this Config
    from tinkerkit.train.rl_batch import Loss
    from tinkerkit.train.rl_rewards import OnRewardError, RewardFn
    from tinkerkit.train.rl_sampling import PromptSource

LOSS_FN_CONFIG_KEYS = {"clip_low_threshold": "clip_low", "clip_high_threshold": "clip_high"}
"""``loss_fn_config``'s keys (the cookbook's) and the fields they set."""


@dataclass
class Config(RunOptions):
    """RL settings; defaults from the guide's hyperparameter table (lr 1e-5, 4 samples).

    The cookbook's names are accepted too: ``log_path`` (``log_dir``),
    ``load_checkpoint_path`` (``init_state``), ``kl_penalty_coef`` (``kl_coef``),
    ``loss_fn`` (``loss``) and ``loss_fn_config={"clip_low_threshold": ...,
    "clip_high_threshold": ...}`` (``clip_low``/``clip_high``)."""

    prompts: PromptSource
    reward: RewardFn
    init_state: str | None = None
    """Start the policy from a ``tinker://.../weights/`` checkpoint (e.g. an SFT run's)."""
    group_size: int = 4
    """Samples per prompt."""
    batch_size: int = 8
    """Prompts per step."""
    steps: int | None = None
    """Steps to run (default: ``epochs`` over the prompts)."""
    epochs: int = 1
    learning_rate: float = 1e-5
    max_tokens: int = 128
    temperature: float = 1.0
    stop: Sequence[str] | Sequence[int] | None = None
    loss: Loss = "importance_sampling"
    clip_low: float = 0.8
    clip_high: float = 1.2
    scale_advantages: bool = False
    kl_coef: float = 0.0
    """KL penalty to the base model."""
    refresh_every: int = 1
    """Steps per sampler refresh."""
    recompute_logprobs: bool = False
    reward_timeout: float = 30.0
    """Seconds a reward call may take."""
    reward_concurrency: int = 64
    on_reward_error: OnRewardError = "zero"
    log_samples_every: int = 10
    log_samples: int = 4
    log_dir: str | Path = field(default="runs/rl", kw_only=True)
    load_checkpoint_path: InitVar[str | None] = field(default=None, kw_only=True)
    kl_penalty_coef: InitVar[float | None] = field(default=None, kw_only=True)
    loss_fn: InitVar[Loss | None] = field(default=None, kw_only=True)
    loss_fn_config: InitVar[Mapping[str, float] | None] = field(default=None, kw_only=True)

    def __post_init__(
        self,
        log_path: str | Path | None,
        load_checkpoint_path: str | None,
        kl_penalty_coef: float | None,
        loss_fn: Loss | None,
        loss_fn_config: Mapping[str, float] | None,
    ) -> None:
        super().__post_init__(log_path)
        resolve_alias(self, "init_state", "load_checkpoint_path", load_checkpoint_path)
        resolve_alias(self, "kl_coef", "kl_penalty_coef", kl_penalty_coef)
        resolve_alias(self, "loss", "loss_fn", loss_fn)
        if loss_fn_config is None:
            return
        unknown = sorted(set(loss_fn_config) - set(LOSS_FN_CONFIG_KEYS))
        if unknown:
            from tinkerkit.errors import ConfigError

            raise ConfigError(
                f"Config.loss_fn_config has unknown keys {unknown}: pass "
                f"{' and/or '.join(LOSS_FN_CONFIG_KEYS)}"
            )
        for key, name in LOSS_FN_CONFIG_KEYS.items():
            resolve_alias(self, name, f"loss_fn_config[{key!r}]", loss_fn_config.get(key))


def check_config(config: Config) -> None:
    from tinkerkit.errors import ConfigError  # here: tinkerkit.errors imports tinker
    from tinkerkit.train.rl_batch import LOSSES

    for name in ("group_size", "batch_size", "epochs", "rank", "max_tokens", "refresh_every"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"Config.{name} must be a positive integer, got {value!r}")
    if config.steps is not None and (not isinstance(config.steps, int) or config.steps < 1):
        raise ConfigError(f"Config.steps must be a positive integer or None, got {config.steps!r}")
    if not 0 < config.learning_rate < float("inf"):
        raise ConfigError(
            f"Config.learning_rate must be a finite number > 0, got {config.learning_rate!r}"
        )
    if config.loss not in LOSSES:
        raise ConfigError(f"Config.loss must be one of {', '.join(LOSSES)}, got {config.loss!r}")
    if config.on_reward_error not in ("zero", "skip"):
        raise ConfigError(
            f"Config.on_reward_error must be 'zero' or 'skip', got {config.on_reward_error!r}"
        )
    if not callable(config.reward):
        raise ConfigError(f"Config.reward must be callable, got {config.reward!r}")
    if config.kl_coef < 0 or config.reward_timeout <= 0:
        raise ConfigError("Config.kl_coef must be >= 0 and Config.reward_timeout > 0")
    if config.refresh_every > 1 and config.save_every % config.refresh_every:
        # A resumed run starts with a fresh sampler; that matches the uninterrupted run
        # only if checkpoints fall on refresh steps.
        raise ConfigError(
            f"Config.save_every ({config.save_every}) must be a multiple of refresh_every "
            f"({config.refresh_every}) so a resumed run samples from the same weights"
        )


def run_identity(config: Config, fingerprint: str) -> dict[str, Any]:
    """What defines the run: resuming with any of these changed is refused."""
    return run_identity_of(
        config,
        "group_size",
        "batch_size",
        "loss",
        "refresh_every",
        "init_state",
        prompts=fingerprint,
    )


def public_config(config: Config) -> dict[str, Any]:
    """The shared JSON-safe config, plus the reward's name and a prompt-list summary."""
    from tinkerkit.train.session import public_config as session_public_config

    out = session_public_config(config)
    out["reward"] = getattr(config.reward, "__qualname__", type(config.reward).__qualname__)
    if not isinstance(config.prompts, str | Path):
        out["prompts"] = f"<{len(config.prompts)} prompts in memory>"
    out["stop"] = list(config.stop) if config.stop is not None else None
    return out
