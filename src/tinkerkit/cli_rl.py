"""``tinkerkit rl``: RL on a prompts file with a reward function named on the command line.

    tinkerkit rl --prompts prompts.jsonl --reward my_rewards.py:score --backend mock \\
        --log-dir runs/rl --steps 30 --lr 2e-2

``--reward`` is ``package.module:function`` (importable) or ``path/to/file.py:function``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import click

from tinkerkit.errors import TinkerkitError


class RewardLoadError(TinkerkitError):
    """``--reward`` does not name a callable reward function."""


class RLSettingError(TinkerkitError):
    """An option value the RL loop refuses (the message names the setting)."""


def load_reward(spec: str) -> Any:
    """The callable named by ``module:function`` or ``path/to/file.py:function``.

    Example:
        >>> load_reward("tinkerkit.recipes.math:math_reward")
        <function math_reward at ...>
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise RewardLoadError(
            f"--reward {spec!r} must look like module:function or path/to/file.py:function"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _module_from_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise RewardLoadError(
                f"--reward: cannot import module {where!r} ({exc}); give an importable "
                "module or a path/to/file.py"
            ) from None
    if not hasattr(module, name):
        raise RewardLoadError(f"--reward: {where} has no attribute {name!r}")
    reward = getattr(module, name)
    if not callable(reward):
        raise RewardLoadError(
            f"--reward: {where}:{name} is a {type(reward).__name__}, not a function; it must "
            "be reward(prompt, completion, **fields) -> float"
        )
    return reward


def _module_from_file(path: Path) -> Any:
    if not path.is_file():
        raise RewardLoadError(f"--reward: no such file {str(path)!r}")
    module_name = f"tinkerkit_reward_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RewardLoadError(f"--reward: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, so dataclasses/pickling inside the file work.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise RewardLoadError(
            f"--reward: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return module


@click.command("rl")
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
@click.option("--rank", default=32, show_default=True, type=int)
@click.option("--group-size", default=4, show_default=True, type=int, help="Samples per prompt.")
@click.option("--batch-size", default=8, show_default=True, type=int, help="Prompts per step.")
@click.option("--steps", default=None, type=int, help="Steps to run (default: --epochs).")
@click.option("--epochs", default=1, show_default=True, type=int)
@click.option("--lr", "learning_rate", default=1e-5, show_default=True, type=float)
@click.option("--max-tokens", default=128, show_default=True, type=int)
@click.option("--temperature", default=1.0, show_default=True, type=float)
@click.option(
    "--loss",
    default="importance_sampling",
    show_default=True,
    type=click.Choice(["importance_sampling", "ppo", "reinforce"]),
)
@click.option("--kl-coef", default=0.0, show_default=True, type=float, help="KL penalty to base.")
@click.option(
    "--refresh-every", default=1, show_default=True, type=int, help="Steps per sampler refresh."
)
@click.option("--reward-timeout", default=30.0, show_default=True, type=float, help="Seconds.")
@click.option("--log-dir", required=True, type=click.Path(path_type=Path))
@click.option("--save-every", default=0, show_default=True, type=int)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --log-dir from its last checkpoint."
)
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
) -> None:
    """Reinforcement learning with a reward function; on-policy, concurrent, resumable."""
    from tinkerkit.cli_common import _connect, _run
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


# The shared --backend/--model/--seed/--latency options are imported last, once ``rl``
# exists: cli.py imports this module from its bottom, and ``python -m tinkerkit.cli``
# runs cli.py a second time (as ``tinkerkit.cli``), which imports ``rl`` from here
# while this module is still loading.
from tinkerkit.cli_common import backend_options  # noqa: E402

backend_options(rl)
