"""``tinkerkit sft``, ``tinkerkit dpo`` and ``tinkerkit rlhf``: the supervised and
preference training commands."""

from __future__ import annotations

from pathlib import Path

import click

from tinkerkit.cli_common import _connect, _run, backend_options
from tinkerkit.cli_options import (
    FRACTION,
    NEW_TOKENS,
    NON_NEGATIVE_INT,
    OUTPUT_FOLDER,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    RANK,
    run_folder_options,
)


@click.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Chat JSONL/JSON/CSV.")
@backend_options
@click.option("--rank", default=32, show_default=True, type=RANK)
@click.option("--epochs", default=3, show_default=True, type=POSITIVE_INT)
@click.option("--batch-size", default=8, show_default=True, type=POSITIVE_INT)
@click.option("--lr", "learning_rate", default=1e-4, show_default=True, type=POSITIVE_FLOAT)
@click.option(
    "--lr-schedule",
    default="constant",
    show_default=True,
    type=click.Choice(["constant", "linear", "cosine"]),
)
@click.option("--warmup-steps", default=0, show_default=True, type=NON_NEGATIVE_INT)
@click.option(
    "--train-on", default="last", show_default=True, type=click.Choice(["last", "all_assistant"])
)
@click.option("--max-length", default=None, type=POSITIVE_INT)
@click.option("--log-dir", required=True, type=OUTPUT_FOLDER)
@click.option(
    "--save-every",
    default=0,
    show_default=True,
    type=NON_NEGATIVE_INT,
    help="Checkpoint every K steps (plus each epoch end).",
)
@click.option("--eval-data", default=None, type=click.Path(path_type=Path))
@click.option("--eval-every", default=0, show_default=True, type=NON_NEGATIVE_INT)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --log-dir from its last checkpoint."
)
@run_folder_options
def sft(
    data: Path,
    backend: str | None,
    model: str,
    seed: int,
    latency: float,
    rank: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    lr_schedule: str,
    warmup_steps: int,
    train_on: str,
    max_length: int | None,
    log_dir: Path,
    save_every: int,
    eval_data: Path | None,
    eval_every: int,
    resume: bool,
    overwrite: bool,
    keep_last: int,
) -> None:
    """Supervised fine-tuning on chats; pipelined, checkpointed, resumable."""
    from tinkerkit.train import sft as sft_loop

    config = sft_loop.Config(
        data=data,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,  # type: ignore[arg-type]
        warmup_steps=warmup_steps,
        rank=rank,
        train_on=train_on,  # type: ignore[arg-type]
        max_length=max_length,
        eval_data=eval_data,
        eval_every=eval_every,
        save_every=save_every,
        seed=seed,
        log_dir=log_dir,
        resume=resume,
        overwrite=overwrite,
        keep_last=keep_last,
    )

    def run() -> None:
        result = sft_loop.train(config, service=_connect(backend, latency))
        if result.already_finished:
            click.echo(f"already finished: {result.log_dir} (nothing trained or saved)")
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        click.echo(f"done: {result.steps} steps, final loss {loss}")
        click.echo(f"state:   {result.state_path}")
        click.echo(f"sampler: {result.sampler_path}")
        click.echo(f"logs:    {result.log_dir}/metrics.jsonl, {result.log_dir}/checkpoints.jsonl")

    _run(run)


@click.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Preference pairs JSONL/JSON/CSV.",
)
@backend_options
@click.option(
    "--objective",
    default="dpo",
    show_default=True,
    type=click.Choice(["dpo", "bradley_terry"]),
    help="dpo trains the policy; bradley_terry trains a reward model.",
)
@click.option(
    "--reference",
    default=None,
    help="DPO reference: a tinker:// sampler path (default: the base model).",
)
@click.option("--beta", default=0.1, show_default=True, type=POSITIVE_FLOAT)
@click.option("--rank", default=32, show_default=True, type=RANK)
@click.option("--epochs", default=1, show_default=True, type=POSITIVE_INT)
@click.option(
    "--batch-size", default=8, show_default=True, type=POSITIVE_INT, help="Pairs per step."
)
@click.option("--lr", "learning_rate", default=1e-5, show_default=True, type=POSITIVE_FLOAT)
@click.option("--eval-data", default=None, type=click.Path(path_type=Path))
@click.option("--eval-split", default=0.0, show_default=True, type=FRACTION)
@click.option("--save-every", default=0, show_default=True, type=NON_NEGATIVE_INT)
@click.option("--log-dir", required=True, type=OUTPUT_FOLDER)
@click.option("--resume", is_flag=True)
@run_folder_options
def dpo(
    data: Path,
    backend: str | None,
    model: str,
    seed: int,
    latency: float,
    objective: str,
    reference: str | None,
    beta: float,
    rank: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    eval_data: Path | None,
    eval_split: float,
    save_every: int,
    log_dir: Path,
    resume: bool,
    overwrite: bool,
    keep_last: int,
) -> None:
    """Preference learning on pairs: DPO, or a Bradley-Terry reward model."""
    from tinkerkit.train import preference

    config = preference.DPOConfig(
        data=data,
        model=model,
        objective=objective,  # type: ignore[arg-type]
        reference=reference,
        beta=beta,
        rank=rank,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        eval_data=eval_data,
        eval_split=eval_split,
        save_every=save_every,
        seed=seed,
        log_dir=log_dir,
        resume=resume,
        overwrite=overwrite,
        keep_last=keep_last,
    )

    def run() -> None:
        train = preference.train_dpo if objective == "dpo" else preference.train_reward_model
        result = train(config, _connect(backend, latency))
        evals = result.evals()
        if evals:
            click.echo(
                f"held-out accuracy {evals[0]['eval_accuracy']:.2f} → {evals[-1]['eval_accuracy']:.2f}, "
                f"margin {evals[0]['eval_margin']:.2f} → {evals[-1]['eval_margin']:.2f}"
            )
        click.echo(f"state:   {result.state_path}")
        click.echo(f"sampler: {result.sampler_path}")

    _run(run)


@click.command()
@click.option(
    "--sft-data", required=True, type=click.Path(path_type=Path), help="Chats for stage 1."
)
@click.option(
    "--preference-data",
    required=True,
    type=click.Path(path_type=Path),
    help="Pairs for the reward model.",
)
@click.option(
    "--prompts", required=True, type=click.Path(path_type=Path), help="RL prompts for stage 3."
)
@backend_options
@click.option("--out", "out_dir", required=True, type=OUTPUT_FOLDER)
@click.option("--rank", default=16, show_default=True, type=RANK)
@click.option("--rl-steps", default=20, show_default=True, type=POSITIVE_INT)
@click.option("--sft-lr", default=1e-4, show_default=True, type=POSITIVE_FLOAT)
@click.option("--reward-lr", default=1e-5, show_default=True, type=POSITIVE_FLOAT)
@click.option("--policy-lr", default=1e-6, show_default=True, type=POSITIVE_FLOAT)
@click.option("--group-size", default=4, show_default=True, type=POSITIVE_INT)
@click.option("--max-tokens", default=32, show_default=True, type=NEW_TOKENS)
def rlhf(
    sft_data: Path,
    preference_data: Path,
    prompts: Path,
    backend: str | None,
    model: str,
    seed: int,
    latency: float,
    out_dir: Path,
    rank: int,
    rl_steps: int,
    sft_lr: float,
    reward_lr: float,
    policy_lr: float,
    group_size: int,
    max_tokens: int,
) -> None:
    """Three-stage RLHF: SFT → reward model → RL; re-running resumes where it stopped."""
    from tinkerkit.recipes.rlhf import RLHFConfig
    from tinkerkit.recipes.rlhf import rlhf as run_rlhf

    config = RLHFConfig(
        sft_data=sft_data,
        preference_data=preference_data,
        prompts=prompts,
        model=model,
        out_dir=out_dir,
        rank=rank,
        seed=seed,
        rl_steps=rl_steps,
        sft_learning_rate=sft_lr,
        reward_learning_rate=reward_lr,
        rl_learning_rate=policy_lr,
        group_size=group_size,
        max_tokens=max_tokens,
    )

    def run() -> None:
        result = run_rlhf(config, _connect(backend, latency))
        click.echo(f"reward model:   {result.reward_model_path}")
        if result.rl_rewards:
            click.echo(f"RL reward:      {result.rl_rewards[0]:.3f} → {result.rl_rewards[-1]:.3f}")
        click.echo(f"policy sampler: {result.policy_sampler_path}")

    _run(run)
