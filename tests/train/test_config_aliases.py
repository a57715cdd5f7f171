"""The cookbook's names on the loops' Configs: each gives the same Config as the old name,
both given and different is a ConfigError naming both, and an alias is no field (not in
run.json's config, not in the run's identity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tinkerkit.errors import ConfigError
from tinkerkit.train import rl_config
from tinkerkit.train.preference_config import DPOConfig
from tinkerkit.train.session import public_config
from tinkerkit.train.sft_config import Config as SFTConfig


def _reward(prompt: str, completion: str, **fields: Any) -> float:
    return 0.0


def _rl(**kw: Any) -> rl_config.Config:
    return rl_config.Config(prompts=["a"], reward=_reward, **kw)


RL_ALIASES = [
    ({"log_path": "runs/x"}, {"log_dir": "runs/x"}),
    ({"load_checkpoint_path": "tinker://r/weights/a"}, {"init_state": "tinker://r/weights/a"}),
    ({"kl_penalty_coef": 0.1}, {"kl_coef": 0.1}),
    ({"loss_fn": "ppo"}, {"loss": "ppo"}),
    (
        {"loss_fn_config": {"clip_low_threshold": 0.7, "clip_high_threshold": 1.3}},
        {"clip_low": 0.7, "clip_high": 1.3},
    ),
    ({"loss_fn_config": {"clip_high_threshold": 1.5}}, {"clip_high": 1.5}),
]


@pytest.mark.parametrize(("alias", "old"), RL_ALIASES)
def test_rl_alias_gives_the_same_config(alias: dict[str, Any], old: dict[str, Any]) -> None:
    config = _rl(**alias)
    assert config == _rl(**old)
    assert public_config(config) == public_config(_rl(**old))
    assert rl_config.public_config(config) == rl_config.public_config(_rl(**old))
    assert config.run_identity(prompts="f") == _rl(**old).run_identity(prompts="f")
    # given both, the same: accepted
    assert _rl(**alias, **old) == config


@pytest.mark.parametrize(
    "make", [lambda **kw: SFTConfig(data=[], **kw), lambda **kw: DPOConfig(data=[], **kw)]
)
def test_log_path_is_log_dir(make: Any) -> None:
    assert make(log_path="runs/x") == make(log_dir="runs/x")
    assert make(log_path=Path("runs/x"), log_dir="runs/x") == make(log_dir="runs/x")
    assert "log_path" not in public_config(make(log_path="runs/x"))
    with pytest.raises(ConfigError, match=r"log_path.*log_dir"):
        make(log_path="runs/x", log_dir="runs/y")


@pytest.mark.parametrize(
    ("alias", "old"),
    [
        ({"log_path": "a"}, {"log_dir": "b"}),
        ({"load_checkpoint_path": "tinker://a"}, {"init_state": "tinker://b"}),
        ({"kl_penalty_coef": 0.1}, {"kl_coef": 0.2}),
        ({"loss_fn": "ppo"}, {"loss": "reinforce"}),
        ({"loss_fn_config": {"clip_low_threshold": 0.7}}, {"clip_low": 0.5}),
    ],
)
def test_rl_conflicting_alias_is_refused(alias: dict[str, Any], old: dict[str, Any]) -> None:
    (name,) = old
    (alias_name,) = alias
    with pytest.raises(ConfigError) as info:
        _rl(**alias, **old)
    assert alias_name in str(info.value) and name in str(info.value)


def test_loss_fn_config_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="clip_low_threshold"):
        _rl(loss_fn_config={"clip_ratio": 0.2})


def test_copy_with_changes_keeps_working_after_an_alias() -> None:
    config = _rl(log_path="runs/a", kl_penalty_coef=0.1)
    again = config.model_copy(update={"log_dir": "runs/b", "kl_coef": 0.3})
    assert (again.log_dir, again.kl_coef) == ("runs/b", 0.3)
