"""``tinkerkit sft``, ``tinkerkit dpo`` and ``tinkerkit rlhf``: the supervised and
preference training commands.

The sft and dpo options are made from the loops' Configs (``cli_options.config_options``):
their defaults, help and checks are the Config's, written once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinkerkit.cli_common import _connect, _run, backend_options, echo_run
from tinkerkit.cli_options import (
    OUTPUT_FOLDER,
    TEXT,
    config_options,
    run_folder_options,
)
from tinkerkit.train.preference_config import DPOConfig
from tinkerkit.train.rlhf_config import RLHFConfig
from tinkerkit.train.sft_config import Config as SFTConfig


@click.command()
@config_options(
    SFTConfig,
    ["data"],
    help={"data": "Chat JSONL/JSON/CSV: a path or a URL (s3://..., sqlite:///x.db?table=chats)."},
)
@backend_options
@config_options(
    SFTConfig,
    [
        "rank",
        "epochs",
        "batch_size",
        "learning_rate",
        "lr_schedule",
        "warmup_steps",
        "train_on",
        "max_length",
        "log_dir",
        "save_every",
        "eval_data",
        "eval_every",
        "sample_every",
        "resume",
    ],
    required=["log_dir"],
    help={
        "save_every": "Checkpoint every K steps (plus each epoch end).",
        "sample_every": "Sample the --sample-prompt prompts every K steps (0: only at the end).",
    },
)
@click.option(
    "--sample-prompt",
    "sample_prompts",
    multiple=True,
    type=TEXT,
    help="A prompt answered greedily into samples.jsonl as training goes (repeatable).",
)
@run_folder_options
def sft(backend: str | None, latency: float, **fields: Any) -> None:
    """Supervised fine-tuning on chats; pipelined, checkpointed, resumable."""
    from tinkerkit.train import sft as sft_loop

    def run() -> None:
        config = SFTConfig(**fields)  # defaults: the Config's (the options are made from it)
        result = sft_loop.train(config, service=_connect(backend, latency))
        if result.already_finished:
            click.echo(f"already finished: {result.log_dir} (nothing trained or saved)")
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        click.echo(f"done: {result.steps} steps, final loss {loss}")
        echo_run(result, config)

    _run(run)


@click.command()
@config_options(
    DPOConfig,
    ["data"],
    help={"data": "Preference pairs JSONL/JSON/CSV: a path or a URL (s3://..., sqlite:///...)."},
)
@backend_options
@config_options(
    DPOConfig,
    [
        "objective",
        "reference",
        "beta",
        "rank",
        "epochs",
        "batch_size",
        "learning_rate",
        "eval_data",
        "eval_split",
        "save_every",
        "log_dir",
        "resume",
    ],
    required=["log_dir"],
)
@run_folder_options
def dpo(backend: str | None, latency: float, **fields: Any) -> None:
    """Preference learning on pairs: DPO, or a Bradley-Terry reward model."""
    from tinkerkit.train import preference

    def run() -> None:
        config = DPOConfig(**fields)
        train = preference.train_dpo if config.objective == "dpo" else preference.train_reward_model
        result = train(config, _connect(backend, latency))
        evals = result.evals()
        if evals:
            click.echo(
                f"held-out accuracy {evals[0]['eval_accuracy']:.2f} → {evals[-1]['eval_accuracy']:.2f}, "
                f"margin {evals[0]['eval_margin']:.2f} → {evals[-1]['eval_margin']:.2f}"
            )
        echo_run(result, config)

    _run(run)


@click.command()
@config_options(RLHFConfig, ["sft_data", "preference_data", "prompts"])
@backend_options
@click.option(
    "--out", "out_dir", required=True, type=OUTPUT_FOLDER, help="Log folder of all stages."
)
@config_options(
    RLHFConfig,
    [
        "rank",
        "rl_steps",
        "sft_learning_rate",
        "reward_learning_rate",
        "rl_learning_rate",
        "group_size",
        "max_tokens",
    ],
)
@click.pass_context
def rlhf(
    ctx: click.Context,
    sft_data: Path,
    preference_data: Path,
    prompts: Path,
    backend: str | None,
    latency: float,
    **options: Any,
) -> None:
    """Three-stage RLHF: SFT → reward model → RL; re-running resumes where it stopped."""
    from tinkerkit.recipes.rlhf import rlhf as run_rlhf

    # Only what was given: the defaults are RLHFConfig's (--model and --seed show
    # RunOptions', which are the same).
    given = {
        name: value
        for name, value in options.items()
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        and value is not None
    }

    def run() -> None:
        config = RLHFConfig(
            sft_data=sft_data, preference_data=preference_data, prompts=prompts, **given
        )
        result = run_rlhf(config, _connect(backend, latency))
        click.echo(f"reward model:   {result.reward_model_path}")
        if result.rl_rewards:
            click.echo(f"RL reward:      {result.rl_rewards[0]:.3f} → {result.rl_rewards[-1]:.3f}")
        click.echo(f"policy sampler: {result.policy_sampler_path}")

    _run(run)
