"""``tinkerkit rl``: RL on a prompts file with a reward function named on the command line.

    tinkerkit rl --prompts prompts.jsonl --reward my_rewards.py:score --backend mock \\
        --log-dir runs/rl --steps 30 --lr 2e-2

``--reward`` is ``package.module:function`` (importable) or ``path/to/file.py:function``.
The other options are made from ``train.rl_config.Config`` (defaults, help and checks
written once, there); ``--load-checkpoint-path``, ``--kl-penalty-coef`` and ``--loss-fn``
are the cookbook's names for ``--init-state``, ``--kl-coef`` and ``--loss``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinkerkit.cli_common import _connect, _run, backend_options, echo_run
from tinkerkit.cli_options import DataSource, config_options, run_folder_options
from tinkerkit.train.rl_config import Config


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
    type=DataSource(),
    help="JSONL/JSON/CSV (a path or a URL: s3://..., sqlite:///x.db?table=prompts) of "
    '{"prompt": ...} or {"messages": [...]} records; extra fields go to the reward.',
)
@click.option(
    "--reward",
    "reward_spec",
    required=True,
    help="module:function or path/to/file.py:function; reward(prompt, completion, **fields).",
)
@config_options(
    Config,
    [
        "rank",
        "init_state",
        "group_size",
        "batch_size",
        "steps",
        "epochs",
        "learning_rate",
        "max_tokens",
        "temperature",
        "loss",
        "kl_coef",
        "refresh_every",
        "reward_timeout",
        "log_dir",
        "save_every",
        "resume",
    ],
    required=["log_dir"],
    help={"steps": "Steps to run (default: --epochs)."},
)
@run_folder_options
def rl(prompts: Path, reward_spec: str, backend: str | None, latency: float, **fields: Any) -> None:
    """Reinforcement learning with a reward function; on-policy, concurrent, resumable."""
    from tinkerkit.cli_reward import RLSettingError, load_reward
    from tinkerkit.errors import TinkerkitError
    from tinkerkit.train import rl as rl_loop

    def run() -> None:
        try:
            config = Config(prompts=prompts, reward=load_reward(reward_spec), **fields)
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
        echo_run(result, config)

    _run(run)
