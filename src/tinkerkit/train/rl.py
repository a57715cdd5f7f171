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
  ``clip_high``) or ``reinforce`` (the guide's cross_entropy, weights = advantage), the
  one table ``rl_batch.LOSSES``;
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
from dataclasses import dataclass
from typing import Any

from tinker import types

from tinkerkit._sync import run_blocking, run_in_thread
from tinkerkit.data.schemas import RLPrompt
from tinkerkit.protocols import ServiceClientLike
from tinkerkit.train import rl_sampling
from tinkerkit.train.batching import batches_per_epoch
from tinkerkit.train.rl_batch import (
    Batch,
    base_logprobs_by_sample,
    build_batch,
    logprob_input,
    logprob_mismatch,
    rl_loss,
)
from tinkerkit.train.rl_config import Config, check_config, public_config, run_identity
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
    check_config(config)
    # Read and validate the prompts before anything is created: bad input leaves no files.
    prompts = rl_sampling.load(config.prompts)
    run = Run.start(config, run_identity(config, rl_sampling.fingerprint(prompts)))
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
        self.sampler: Any = None
        self.base: Any = None
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
        return SubmittedStep(step, batch, row, self._update(batch), time.monotonic())

    def _update(self, batch: Batch) -> dict[str, Any]:
        """forward_backward + optim_step on the batch (none when no group had signal: an
        empty optim_step would still move the weights through Adam's momentum)."""
        if not batch.datums:
            return {}
        training, c = self.run.training, self.config
        futures: dict[str, Any] = {}
        if c.recompute_logprobs:
            inputs = [logprob_input(d) for d in batch.datums]
            futures["forward"] = training.forward(inputs, "cross_entropy")
        loss_fn, loss_config = rl_loss(c.loss).call(c.clip_low, c.clip_high)
        futures["fb"] = training.forward_backward(batch.datums, loss_fn, loss_config)
        futures["opt"] = training.optim_step(types.AdamParams(learning_rate=c.learning_rate))
        return futures

    def finish(self, submitted: SubmittedStep) -> dict[str, Any]:
        batch, row = submitted.batch, submitted.row
        row.update(batch.stats)
        row.update({"lr": self.config.learning_rate, "loss": 0.0, "datums": len(batch.datums)})
        if not submitted.futures:
            return {**row, "train_time": 0.0}
        results = {name: f.result() for name, f in submitted.futures.items()}
        loss_sum = float(results["fb"].metrics["loss:sum"])
        trained_tokens = sum(len(s.tokens) for s in batch.samples)
        row.update(
            {
                "loss": loss_sum / max(trained_tokens, 1),
                "loss_sum": loss_sum,
                "train_time": time.monotonic() - submitted.started,
            }
        )
        if "forward" in results:
            row.update(logprob_mismatch(batch.samples, results["forward"].loss_fn_outputs))
        return row
