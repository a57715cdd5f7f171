"""Every loop's config refuses a bad setting with ``tk.errors.ConfigError`` (still a
``ValueError``) when it is made, one line naming the field, before anything is read;
moved error classes keep their old imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tinkerkit as tk
from tinkerkit import errors

from .loops import dpo_config, home_runs, rl_config, sft_config

BAD = [
    (sft_config, "epochs", 0, "greater than or equal to 1, got 0"),
    (sft_config, "eval_split", 1.5, "less than or equal to 0.99"),
    (sft_config, "learning_rate", float("nan"), "a finite number, got nan"),
    (sft_config, "keep_last", -1, "greater than or equal to 0"),
    (sft_config, "rank", True, "a valid integer, got True"),
    (dpo_config, "beta", -1.0, "greater than 0"),
    (rl_config, "loss", "nope", "'importance_sampling', 'ppo' or 'reinforce', got 'nope'"),
    (rl_config, "reward", 3, "callable"),
]


@pytest.mark.parametrize(("make", "field", "value", "wanted"), BAD)
def test_a_bad_setting_is_a_config_error_naming_the_field(
    tmp_path: Path, make: Any, field: str, value: object, wanted: str
) -> None:
    with pytest.raises(errors.ConfigError, match=rf"^(DPO)?Config\.{field} must be ") as info:
        make(tmp_path / "run", **{field: value})
    assert wanted in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, errors.TinkerkitError)
    assert home_runs() == [] and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("settings", "wanted"),
    [
        ({"epoch": 1}, "Config has no setting 'epoch'; did you mean epochs?"),
        ({"data": 5}, "Config.data must be str | Path | Sequence[Any], got 5"),
        ({"data": None}, "Config.data must be str | Path | Sequence[Any], got None"),
    ],
)
def test_an_unknown_or_mistyped_setting_is_one_line(settings: dict[str, Any], wanted: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        tk.sft.Config(**{"data": [], **settings})
    assert str(info.value) == wanted


def test_rl_checkpoints_must_fall_on_refresh_steps(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"save_every \(3\).*refresh_every \(2\)"):
        rl_config(tmp_path / "run", save_every=3, refresh_every=2)


def test_records_come_from_any_iterable() -> None:
    """A generator or a Hugging Face ``Dataset`` is read into the config's list of records."""
    from datasets import Dataset

    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    config = tk.sft.Config(data=Dataset.from_list([chat, chat]), eval_data=iter([chat]))
    assert config.data == [chat, chat] and config.eval_data == [chat]
    prompts = rl_config(Path("runs/rl"), prompts=(f"{n}+1=" for n in range(3)))
    assert prompts.prompts == ["0+1=", "1+1=", "2+1="]


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
