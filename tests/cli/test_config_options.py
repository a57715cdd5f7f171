"""The loop commands' options are made from the Config models: each option's default is
the field's default, its checks the field's bounds, the choices the fields' Literal
values, and the cookbook flags (--log-path, --load-checkpoint-path, --kl-penalty-coef,
--loss-fn), the fields' aliases, give the same Config as the old ones."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from tinkerkit import cli_rl, cli_train
from tinkerkit.cli import main
from tinkerkit.cli_options import ConfigOption, Number
from tinkerkit.train import rl_config
from tinkerkit.train.preference_config import DPOConfig
from tinkerkit.train.rlhf_config import RLHFConfig
from tinkerkit.train.run_options import RunOptions
from tinkerkit.train.sft_config import Config as SFTConfig

COMMANDS = [(cli_train.sft, SFTConfig), (cli_train.dpo, DPOConfig), (cli_rl.rl, rl_config.Config)]


def _defaults(config: Any) -> dict[str, Any]:
    return {name: f.default for name, f in config.model_fields.items() if not f.is_required()}


@pytest.mark.parametrize(("command", "config"), COMMANDS, ids=lambda c: getattr(c, "name", ""))
def test_option_defaults_are_the_config_defaults(command: click.Command, config: type) -> None:
    defaults = _defaults(config)
    names = set(config.model_fields)
    made = [p for p in command.params if isinstance(p, ConfigOption)]
    assert {p.name for p in made} >= {"model", "seed", "rank", "epochs", "log_dir", "keep_last"}
    for param in made:
        assert param.name in names, param.name
        if param.required:
            continue
        assert param.default == defaults[param.name], param.name
        assert type(param.default) is type(defaults[param.name]), param.name


def test_backend_options_defaults_are_run_options() -> None:
    defaults = _defaults(RunOptions)
    params = {p.name: p for p in cli_train.sft.params}
    assert params["model"].default == defaults["model"]
    assert params["seed"].default == defaults["seed"]


def test_rlhf_options_are_rlhf_config_defaults() -> None:
    """tinkerkit rlhf's defaults (and --model/--seed, from RunOptions) are RLHFConfig's,
    and so are tk.hparams.HYPERPARAMS["rlhf"]."""
    import tinkerkit as tk

    defaults = _defaults(RLHFConfig)
    params = {p.name: p for p in cli_train.rlhf.params}
    made = [p for p in params.values() if isinstance(p, ConfigOption) and not p.required]
    assert {p.name for p in made} >= {"rank", "rl_steps", "rl_learning_rate", "max_tokens"}
    for param in made:
        assert param.default == defaults[param.name], param.name
    assert params["rl_learning_rate"].opts == ["--policy-lr"]
    assert tk.hparams.HYPERPARAMS["rlhf"] == {
        "sft_epochs": defaults["sft_epochs"],
        "reward_lr": defaults["reward_learning_rate"],
        "policy_lr": defaults["rl_learning_rate"],
    }
    assert tk.hparams.HYPERPARAMS["rlhf"] == {"sft_epochs": 1, "reward_lr": 1e-5, "policy_lr": 1e-6}


def test_help_comes_from_the_field_docstring() -> None:
    params = {p.name: p for p in cli_rl.rl.params}
    assert params["group_size"].help == "Samples per prompt."
    assert "tinker://" in (params["init_state"].help or "")


def _choices(command: click.Command, name: str) -> list[str]:
    (param,) = [p for p in command.params if p.name == name]
    assert isinstance(param.type, click.Choice)
    return list(param.type.choices)


def test_choices_are_the_literal_values() -> None:
    """The configs' Literals (spelled there: their modules import tinker) are the ones
    the loops use."""
    from tinkerkit.data import chat
    from tinkerkit.train import rl_batch, rl_rewards
    from tinkerkit.train.preference_config import Objective
    from tinkerkit.train.schedules import Schedule

    assert _choices(cli_train.sft, "lr_schedule") == list(typing.get_args(Schedule))
    assert _choices(cli_train.sft, "train_on") == list(typing.get_args(chat.TrainOn))
    assert _choices(cli_train.dpo, "objective") == list(typing.get_args(Objective))
    assert _choices(cli_rl.rl, "loss") == list(rl_batch.LOSSES)
    assert typing.get_args(rl_config.Loss) == typing.get_args(rl_batch.Loss)
    assert typing.get_args(rl_config.OnRewardError) == typing.get_args(rl_rewards.OnRewardError)


def test_option_checks_are_the_field_bounds() -> None:
    params = {p.name: p for p in cli_rl.rl.params}
    assert repr(params["learning_rate"].type) == "Number(float, a finite number above 0)"
    assert repr(params["kl_coef"].type) == "Number(float, a finite number at least 0)"
    assert (
        repr(params["steps"].type) == "Number(int, a whole number at least 1 and at most 1000000)"
    )
    # the backends' request limits, too
    assert repr(params["rank"].type) == "Number(int, a whole number at least 1 and at most 1024)"
    assert isinstance(params["max_tokens"].type, Number) and params["max_tokens"].type.at_most
    dpo = {p.name: p for p in cli_train.dpo.params}
    assert repr(dpo["eval_split"].type) == (
        "Number(float, a finite number at least 0 and at most 0.99)"
    )


class _Made(Exception):
    pass


def _config_from(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, args: list[str]) -> Any:
    """The Config a command line builds (the command stops right after)."""
    made: list[Any] = []
    real = getattr(module, name)

    def record(**kw: Any) -> Any:
        made.append(real(**kw))
        raise _Made

    monkeypatch.setattr(module, name, record)
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, _Made), result.output
    monkeypatch.setattr(module, name, real)
    return made[0]


def test_log_path_flag_is_log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for command, name in (("sft", "SFTConfig"), ("dpo", "DPOConfig")):
        base = [command, "--data", str(tmp_path / "d.jsonl"), "--backend", "mock"]
        old = _config_from(monkeypatch, cli_train, name, [*base, "--log-dir", str(tmp_path / "r")])
        new = _config_from(monkeypatch, cli_train, name, [*base, "--log-path", str(tmp_path / "r")])
        assert old == new and Path(new.log_dir) == tmp_path / "r"


def test_rl_cookbook_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reward.py").write_text("def score(prompt, completion, **kw):\n    return 0.0\n")
    base = ["rl", "--prompts", str(tmp_path / "p.jsonl"), "--reward", f"{tmp_path}/reward.py:score"]
    base += ["--backend", "mock"]
    old = [*base, "--log-dir", "r", "--init-state", "tinker://a", "--kl-coef", "0.1"]
    old += ["--loss", "ppo"]
    new = [*base, "--log-path", "r", "--load-checkpoint-path", "tinker://a"]
    new += ["--kl-penalty-coef", "0.1", "--loss-fn", "ppo"]
    a = _config_from(monkeypatch, cli_rl, "Config", old)
    b = _config_from(monkeypatch, cli_rl, "Config", new)
    assert a.reward is not None and b.reward is not None
    assert a.model_copy(update={"reward": None}) == b.model_copy(update={"reward": None})
    assert (b.init_state, b.kl_coef, b.loss) == ("tinker://a", 0.1, "ppo")


def test_alias_flag_errors_name_the_first_flag(tmp_path: Path) -> None:
    args = ["rl", "--prompts", "p", "--reward", "r:f", "--log-dir", "r", "--kl-penalty-coef"]
    result = CliRunner().invoke(main, [*args, "nan"])
    assert result.exit_code == 2
    assert "'--kl-coef'" in result.output and "--kl-penalty-coef'" not in result.output


def test_rlhf_passes_only_what_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["rlhf", "--sft-data", "s", "--preference-data", "p", "--prompts", "q"]
    base += ["--out", str(tmp_path / "o"), "--backend", "mock"]
    plain = _config_from(monkeypatch, cli_train, "RLHFConfig", base)
    assert plain == RLHFConfig(
        sft_data=Path("s"), preference_data=Path("p"), prompts=Path("q"), out_dir=tmp_path / "o"
    )
    given = _config_from(
        monkeypatch,
        cli_train,
        "RLHFConfig",
        [*base, "--rank", "8", "--policy-lr", "2e-6", "--seed", "3"],
    )
    assert (given.rank, given.rl_learning_rate, given.seed) == (8, 2e-6, 3)
    assert given.rl_steps == plain.rl_steps
