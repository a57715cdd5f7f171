"""Every loop refuses a bad config with ``tk.errors.ConfigError`` (still a ``ValueError``),
naming the field, before anything is read; moved error classes keep their old imports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import tinkerkit as tk
from tinkerkit import errors
from tinkerkit.train import preference, rl_config, session, sft

from .loops import dpo_config, home_runs, sft_config
from .loops import rl_config as make_rl_config

BAD = [
    (sft.check_config, sft_config, "epochs", 0),
    (sft.check_config, sft_config, "eval_split", 1.5),
    (preference.check_config, dpo_config, "beta", -1.0),
    (rl_config.check_config, make_rl_config, "loss", "nope"),
]


@pytest.mark.parametrize(("check", "make", "field", "value"), BAD)
def test_a_bad_setting_is_a_config_error_naming_the_field(
    tmp_path: Path, check: Any, make: Any, field: str, value: object
) -> None:
    config = replace(make(tmp_path / "run"), **{field: value})
    with pytest.raises(errors.ConfigError, match=rf"\.{field} must be") as info:
        check(config)
    assert isinstance(info.value, ValueError) and isinstance(info.value, errors.TinkerkitError)


def test_a_negative_keep_last_is_refused_before_any_client(tmp_path: Path) -> None:
    config = sft_config(tmp_path / "run", keep_last=-1)
    with pytest.raises(errors.ConfigError, match="keep_last"):
        session.start_run(config, {"model": config.model})
    with pytest.raises(ValueError, match="keep_last"):
        tk.sft.train(config, service=tk.connect("mock"))
    assert home_runs() == []


def test_moved_errors_keep_their_old_import_paths() -> None:
    from tinkerkit.backends import optimizers, registry
    from tinkerkit.cli_reward import RewardLoadError
    from tinkerkit.data.chat import ChatFormatError
    from tinkerkit.train.checkpoints import NothingToResumeError
    from tinkerkit.train.losses import LossCheckError

    assert ChatFormatError is errors.ChatFormatError
    assert NothingToResumeError is errors.NothingToResumeError
    assert LossCheckError is errors.LossCheckError
    assert RewardLoadError is errors.RewardLoadError
    assert registry.BackendUnavailableError is errors.BackendUnavailableError
    assert optimizers.UnknownOptimizerError is errors.UnknownOptimizerError
    assert optimizers.OptimizerParamsError is errors.OptimizerParamsError
    assert optimizers.OptimizerStateMismatchError is errors.OptimizerStateMismatchError
