"""``tinkerkit rl``: RL on a prompts file with a reward function named on the command line.

    tinkerkit rl --prompts prompts.jsonl --reward my_rewards.py:score --backend mock \\
        --log-dir runs/rl --steps 30 --lr 2e-2

``--reward`` is ``package.module:function`` (importable) or ``path/to/file.py:function``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinkerkit.cli_common import _connect, _run, backend_options
from tinkerkit.cli_options import (
    NEW_TOKENS,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    OUTPUT_FOLDER,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    RANK,
    run_folder_options,
)


def __getattr__(name: str) -> Any:
    # ``load_reward`` and its error live in ``cli_reward`` (which imports tinker); the
    # names stay importable from here without importing it with the CLI.
    if name in ("load_reward", "RewardLoadError", "RLSettingError"):
        from tinkerkit import cli_reward

        return getattr(cli_reward, name)
    raise AttributeError(f"module 'tinkerkit.cli_rl' has no attribute {name!r}")


@click.command("rl")
@backend_options
@click.option(
    "--prompts",
    required=True,
    type=click.Path(path_type=Path),
    help='JSONL of {"prompt": ...} or {"messages": [...]} records; extra fields go to the reward.',
)
@click.option(
    "--reward",
    "reward_spec",
    required=True,
    help="module:function or path/to/file.py:function; reward(prompt, completion, **fields).",
)
@click.option("--rank", default=32, show_default=True, type=RANK)
@click.option(
    "--group-size", default=4, show_default=True, type=POSITIVE_INT, help="Samples per prompt."
)
@click.option(
    "--batch-size", default=8, show_default=True, type=POSITIVE_INT, help="Prompts per step."
)
@click.option("--steps", default=None, type=POSITIVE_INT, help="Steps to run (default: --epochs).")
@click.option("--epochs", default=1, show_default=True, type=POSITIVE_INT)
@click.option("--lr", "learning_rate", default=1e-5, show_default=True, type=POSITIVE_FLOAT)
@click.option("--max-tokens", default=128, show_default=True, type=NEW_TOKENS)
@click.option("--temperature", default=1.0, show_default=True, type=NON_NEGATIVE_FLOAT)
@click.option(
    "--loss",
    default="importance_sampling",
    show_default=True,
    type=click.Choice(["importance_sampling", "ppo", "reinforce"]),
)
@click.option(
    "--kl-coef", default=0.0, show_default=True, type=NON_NEGATIVE_FLOAT, help="KL penalty to base."
)
@click.option(
    "--refresh-every",
    default=1,
    show_default=True,
    type=POSITIVE_INT,
    help="Steps per sampler refresh.",
)
@click.option(
    "--reward-timeout", default=30.0, show_default=True, type=POSITIVE_FLOAT, help="Seconds."
)
@click.option("--log-dir", required=True, type=OUTPUT_FOLDER)
@click.option("--save-every", default=0, show_default=True, type=NON_NEGATIVE_INT)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --log-dir from its last checkpoint."
)
@run_folder_options
def rl(
    prompts: Path,
    reward_spec: str,
    backend: str | None,
    model: str,
    seed: int,
    latency: float,
    rank: int,
    group_size: int,
    batch_size: int,
    steps: int | None,
    epochs: int,
    learning_rate: float,
    max_tokens: int,
    temperature: float,
    loss: str,
    kl_coef: float,
    refresh_every: int,
    reward_timeout: float,
    log_dir: Path,
    save_every: int,
    resume: bool,
    overwrite: bool,
    keep_last: int,
) -> None:
    """Reinforcement learning with a reward function; on-policy, concurrent, resumable."""
    from tinkerkit.cli_reward import RLSettingError, load_reward
    from tinkerkit.errors import TinkerkitError
    from tinkerkit.train import rl as rl_loop

    def run() -> None:
        try:
            config = rl_loop.Config(
                prompts=prompts,
                reward=load_reward(reward_spec),
                model=model,
                rank=rank,
                group_size=group_size,
                batch_size=batch_size,
                steps=steps,
                epochs=epochs,
                learning_rate=learning_rate,
                max_tokens=max_tokens,
                temperature=temperature,
                loss=loss,  # type: ignore[arg-type]
                kl_coef=kl_coef,
                refresh_every=refresh_every,
                reward_timeout=reward_timeout,
                save_every=save_every,
                seed=seed,
                log_dir=log_dir,
                resume=resume,
                overwrite=overwrite,
                keep_last=keep_last,
            )
            result = rl_loop.train(config, service=_connect(backend, latency))
        except TinkerkitError:
            raise
        except ValueError as exc:  # a bad setting: one line, like our typed errors
            raise RLSettingError(str(exc)) from None
        rewards = result.rewards or [0.0]
        head, tail = rewards[:5], rewards[-5:]
        click.echo(
            f"done: {result.steps} steps, mean reward {sum(head) / len(head):.3f} (first "
            f"{len(head)}) -> {sum(tail) / len(tail):.3f} (last {len(tail)})"
        )
        click.echo(f"state:   {result.state_path}")
        click.echo(f"sampler: {result.sampler_path}")
        click.echo(f"logs:    {result.log_dir}/metrics.jsonl, {result.log_dir}/checkpoints.jsonl")

    _run(run)
