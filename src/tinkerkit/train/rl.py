"""Reinforcement learning with a reward function: the guide's ``rl_training``, fixed.

Each step: sample ``group_size`` completions of ``batch_size`` prompts (all requests in
flight at once) → score them with ``reward`` (concurrently, with a timeout) → advantages
= reward − group mean → train on exactly the sampled tokens with their sampling logprobs
→ refresh the sampler. Compared with the guide's loop: groups instead of one prompt at a
time, advantages instead of raw rewards in ``cross_entropy``, no decode → re-encode, and
an on-policy sampler every step instead of every 50.

Features and their knobs (all in ``Config``):
- prompts: a JSONL/JSON/CSV path, or a list of strings / dicts / ``RLPrompt`` (``prompts``);
  extra fields (``answer``...) are passed to the reward as keyword arguments;
- reward: ``reward(prompt, completion, **fields) -> float``, sync, ``async def``, or a
  callable object (``reward``); ``reward_timeout`` per call, ``reward_concurrency``;
  failures are logged, counted (``reward_errors``) and scored by ``on_reward_error``;
- sampling: ``group_size``, ``max_tokens``, ``temperature``, ``stop``; seeded per
  (``seed``, step, prompt), so runs and resumes are reproducible;
- objective: ``loss`` = ``importance_sampling`` (default), ``ppo`` (``clip_low``,
  ``clip_high``) or ``reinforce`` (the guide's cross_entropy, weights = advantage);
  ``scale_advantages`` (divide by the group's std); ``kl_coef`` (penalty towards the base
  model, measured KL logged as ``kl``); ``recompute_logprobs`` (log sampler/trainer drift);
- schedule: ``steps`` or ``epochs`` over the prompts, ``batch_size``, ``learning_rate``,
  LoRA ``rank``; ``refresh_every`` (1 = on-policy; K reuses a sampler K steps);
- checkpoints: every ``save_every`` steps and ``final`` (``LOG_DIR/checkpoints.jsonl``), the
  newest ``keep_last`` kept; ``resume=True`` continues a killed or interrupted run to the
  same result (a finished one returns its recorded result); a ``log_dir`` holding a run
  is refused unless ``resume`` or ``overwrite``;
- logging: ``LOG_DIR/metrics.jsonl`` (one row per step), ``LOG_DIR/samples.jsonl``
  (``log_samples`` transcripts every ``log_samples_every`` steps), a progress bar,
  ``callbacks``, ``wandb_project``.

    result = tk.rl.train(tk.rl.Config(prompts="prompts.jsonl", reward=my_reward,
                                      log_dir="runs/rl"), service=tk.connect("mock"))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinkerkit._sync import raise_if_stopped, run_blocking, run_in_thread
from tinkerkit.data.schemas import RLPrompt
from tinkerkit.train import rl_prompts
from tinkerkit.train.batching import Cursor, batches_per_epoch, iterate
from tinkerkit.train.metrics import MetricsLogger
from tinkerkit.train.rl_batch import apply_rewards
from tinkerkit.train.rl_config import Config, check_config, public_config, run_identity
from tinkerkit.train.rl_rewards import RewardCall, score_all
from tinkerkit.train.rl_sampling import Sample, sample_groups
from tinkerkit.train.rl_update import Trainer
from tinkerkit.train.session import RunResult, next_cursor, open_prepared_session, start_run

__all__ = ["Config", "Result", "train", "train_async"]


@dataclass
class Result(RunResult):
    @property
    def rewards(self) -> list[float]:
        """Mean reward of each step, in order."""
        return [m["reward_mean"] for m in self.metrics if "reward_mean" in m]


def train(config: Config, service: Any = None) -> Result:
    """Run RL to completion (or continue it with ``resume=True``); works in notebooks.

    Example:
        >>> from tinkerkit.recipes import arithmetic_prompts, math_reward
        >>> result = train(Config(prompts=arithmetic_prompts(64, seed=0), reward=math_reward,
        ...                       steps=20, learning_rate=2e-2, log_dir="runs/rl"),
        ...                service=tk.connect("mock"))
        >>> result.rewards[-1] > result.rewards[0]
        True
    """
    return run_blocking(lambda: _train(config, service))


async def train_async(config: Config, service: Any = None) -> Result:
    """``train`` for async code: ``result = await tk.rl.train_async(config)``."""
    return await run_in_thread(lambda: _train(config, service))


def _train(config: Config, service: Any) -> Result:
    check_config(config)
    log_dir = Path(config.log_dir)
    # Read and validate the prompts before anything is created: bad input leaves no files.
    # Read and validate the prompts and the log folder before anything is created: a
    # refused run leaves no files, here or under TINKERKIT_HOME.
    prompts = rl_prompts.load(config.prompts)
    identity = run_identity(config, rl_prompts.fingerprint(prompts))
    run = start_run(config, identity)
    if run.finished:
        return run.recorded(Result)

    session, tokenizer, prompt_tokens = open_prepared_session(
        service, config, run, lambda tok: rl_prompts.render(prompts, tok), config.init_state
    )
    service = session.service
    training = session.training
    session.begin(identity, public_config(config))
    start, start_step = session.start, session.start_step

    per_epoch = batches_per_epoch(len(prompts), config.batch_size)
    total = config.steps if config.steps is not None else per_epoch * config.epochs
    epochs = -(-total // per_epoch)
    base = None
    if config.kl_coef > 0:
        base = service.create_sampling_client(base_model=config.model).result()
    trainer = Trainer(config, session, base)
    labels = {i: rl_prompts.label(p, i) for i, p in enumerate(prompts)}
    metrics = session.metrics(config, total)
    try:
        step = start_step
        sampler = None
        indices = list(range(len(prompts)))
        for cursor, batch in iterate(indices, config.batch_size, epochs, config.seed, start):
            raise_if_stopped()
            step += 1
            # On-policy by default: sample from the weights the last optim_step produced.
            if sampler is None or (step - 1) % config.refresh_every == 0:
                sampler = training.save_weights_and_get_sampling_client().result()
            t0 = time.monotonic()
            groups = sample_groups(
                sampler,
                [(i, prompt_tokens[i]) for i in batch],
                tokenizer,
                group_size=config.group_size,
                step=step,
                seed=config.seed,
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                stop=config.stop,
            )
            sample_time = time.monotonic() - t0
            # Checkpoints saved after the previous step have landed by now (the saves ran
            # while we sampled); write their lines so an interruption can resume from them.
            trainer.pipeline.drain()
            groups, errors = _score(config, prompts, labels, groups, step)
            reward_time = time.monotonic() - t0 - sample_time
            row = {
                "step": step,
                "epoch": cursor.epoch + 1,
                "reward_errors": errors,
                "sample_time": sample_time,
                "reward_time": reward_time,
            }
            trainer.train_step(step, groups, row, metrics)
            if config.log_samples_every and step % config.log_samples_every == 0:
                _log_transcripts(step, groups, prompts, config.log_samples, metrics)
            if step == total:
                break
            if config.save_every and step % config.save_every == 0:
                following = next_cursor(cursor, per_epoch)
                trainer.checkpoints.submit(f"step-{step:06d}", step, following)
        final = trainer.checkpoints.submit("final", step, Cursor(epochs, 0))
        trainer.pipeline.drain()
    finally:
        metrics.close()
    return Result(final["state"], final["sampler"], log_dir, step, metrics.rows, metrics.samples)


def _score(
    config: Config,
    prompts: Sequence[RLPrompt],
    labels: dict[int, str],
    groups: list[list[Sample]],
    step: int,
) -> tuple[list[list[Sample]], int]:
    """Score every sample concurrently; returns the groups left and the number of failures."""
    calls = [
        RewardCall(
            rl_prompts.for_reward(prompts[s.prompt_index]), s.text, prompts[s.prompt_index].fields
        )
        for group in groups
        for s in group
    ]
    outcomes = score_all(
        config.reward, calls, timeout=config.reward_timeout, concurrency=config.reward_concurrency
    )
    errors = sum(o.error is not None for o in outcomes)
    kept = apply_rewards(groups, outcomes, labels, on_error=config.on_reward_error, step=step)
    return kept, errors


def _log_transcripts(
    step: int,
    groups: Sequence[Sequence[Sample]],
    prompts: Sequence[RLPrompt],
    limit: int,
    metrics: MetricsLogger,
) -> None:
    # One sample from each of the first groups: shows the spread across prompts.
    for sample in [group[0] for group in groups if group][:limit]:
        p = prompts[sample.prompt_index]
        metrics.log_sample(
            {
                "step": step,
                "prompt": rl_prompts.for_reward(p),
                "completion": sample.text,
                "reward": sample.reward,
            }
        )
