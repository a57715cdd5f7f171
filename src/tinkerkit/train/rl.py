"""Reinforcement learning with a reward function: the guide's ``rl_training``, fixed.

Each step samples ``group_size`` completions of ``batch_size`` prompts at once, scores them
concurrently, centres rewards in their group and trains on exactly the sampled tokens, on
policy. What it fixes in the guide's loop: docs/rl.md.

Every feature and its knob: docs/rl.md, "Features and their knobs".

    result = tk.rl.train(tk.rl.Config(prompts="prompts.jsonl", reward=my_reward,
                                      log_dir="runs/rl"), service=tk.connect("mock"))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tinkerkit._sync import run_blocking, run_in_thread
from tinkerkit.data.schemas import RLPrompt
from tinkerkit.protocols import SamplingClientLike, ServiceClientLike
from tinkerkit.train import rl_sampling
from tinkerkit.train.batching import batches_per_epoch
from tinkerkit.train.rl_batch import (
    Batch,
    base_logprobs_by_sample,
    build_batch,
    submit_update,
    update_metrics,
)
from tinkerkit.train.rl_config import Config, public_config
from tinkerkit.train.rl_rewards import score_groups
from tinkerkit.train.rl_sampling import sample_groups, transcripts
from tinkerkit.train.run import Run, Step
from tinkerkit.train.session import RunResult

__all__ = ["Config", "Result", "train", "train_async"]


@dataclass
class Result(RunResult):
    @property
    def rewards(self) -> list[float]:
        """Mean reward of each step, in order (the whole run's, resumes included)."""
        return [m["reward_mean"] for m in self.metrics if "reward_mean" in m]


def train(config: Config, service: ServiceClientLike | None = None) -> Result:
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


async def train_async(config: Config, service: ServiceClientLike | None = None) -> Result:
    """``train`` for async code: ``result = await tk.rl.train_async(config)``."""
    return await run_in_thread(lambda: _train(config, service))


def _train(config: Config, service: ServiceClientLike | None) -> Result:
    # Read and validate the prompts before anything is created: bad input leaves no files.
    prompts = rl_sampling.load(config.prompts)
    run = Run.start(config, config.run_identity(prompts=rl_sampling.fingerprint(prompts)))
    if run.finished:
        return run.recorded(Result)
    tokens = run.open(service, lambda tok: rl_sampling.render(prompts, tok), config.init_state)
    loop = _RL(config, run, prompts, tokens)
    per_epoch = batches_per_epoch(len(prompts), config.batch_size)
    total = config.steps if config.steps is not None else per_epoch * config.epochs
    # Checkpoint lines are written once their saves land, while the next step samples.
    with run.begin(total, depth=2, config=public_config(config)):
        for step in run.steps(
            range(len(prompts)), config.batch_size, -(-total // per_epoch), total
        ):
            # On-policy: each step is finished (trained) before the next one samples.
            run.log(loop.finish(loop.submit(step)))
            if step.last:
                break
            if run.save_due(step):
                run.save(step)
        return run.finish(Result)


@dataclass
class SubmittedStep:
    """An RL step's update in flight, with its samples and the row so far."""

    step: Step[int]
    batch: Batch
    row: dict[str, Any]
    futures: dict[str, Any]
    started: float


class _RL:
    """An RL step: sample groups → rewards → advantages → one update; and its row."""

    def __init__(
        self, config: Config, run: Run, prompts: list[RLPrompt], tokens: list[list[int]]
    ) -> None:
        self.config, self.run, self.prompts, self.tokens = config, run, prompts, tokens
        self.labels = {i: rl_sampling.label(p, i) for i, p in enumerate(prompts)}
        self.sampler: SamplingClientLike | None = None
        self.base: SamplingClientLike | None = None
        if config.kl_coef > 0:
            self.base = run.service.create_sampling_client(base_model=config.model).result()

    def submit(self, step: Step[int]) -> SubmittedStep:
        c, run = self.config, self.run
        # On-policy by default: sample from the weights the last optim_step produced.
        if self.sampler is None or (step.number - 1) % c.refresh_every == 0:
            self.sampler = run.training.save_weights_and_get_sampling_client().result()
        t0 = time.monotonic()
        groups = sample_groups(
            self.sampler,
            [(i, self.tokens[i]) for i in step.batch],
            run.tokenizer,
            group_size=c.group_size,
            step=step.number,
            seed=c.seed,
            max_tokens=c.max_tokens,
            temperature=c.temperature,
            stop=c.stop,
        )
        sample_time = time.monotonic() - t0
        # The checkpoint saved after the previous step landed while we sampled: write its
        # line now, so an interruption while rewards run resumes from it.
        run.drain()
        groups, errors = score_groups(
            c.reward,
            self.prompts,
            groups,
            self.labels,
            step=step.number,
            timeout=c.reward_timeout,
            concurrency=c.reward_concurrency,
            on_error=c.on_reward_error,
        )
        row = {
            "step": step.number,
            "epoch": step.epoch + 1,
            "reward_errors": errors,
            "sample_time": sample_time,
            "reward_time": time.monotonic() - t0 - sample_time,
        }
        if c.log_samples_every and step.number % c.log_samples_every == 0:
            run.log_samples(transcripts(step.number, groups, self.prompts, c.log_samples))
        batch = build_batch(
            groups,
            loss=c.loss,
            scale_by_std=c.scale_advantages,
            kl_coef=c.kl_coef,
            base_logprobs=base_logprobs_by_sample(self.base, groups),
        )
        futures = submit_update(
            run.training,
            batch,
            loss=c.loss,
            learning_rate=c.learning_rate,
            clip_low=c.clip_low,
            clip_high=c.clip_high,
            recompute_logprobs=c.recompute_logprobs,
        )
        return SubmittedStep(step, batch, row, futures, time.monotonic())

    def finish(self, submitted: SubmittedStep) -> dict[str, Any]:
        results = {name: f.result() for name, f in submitted.futures.items()}
        return {
            **submitted.row,
            **submitted.batch.stats,
            "lr": self.config.learning_rate,
            "datums": len(submitted.batch.datums),
            **update_metrics(submitted.batch, results),
            "train_time": time.monotonic() - submitted.started if results else 0.0,
        }
