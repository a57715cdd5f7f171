"""Supervised fine-tuning: the guide's ``sft_training`` loop, pipelined and resumable.

Features and their knobs (all in ``Config``):
- data: a chat JSONL/JSON/CSV path, a list of chats, or a list of ``Datum`` (``data``);
  which turns are trained (``train_on``), length limit (``max_length``);
- schedule: ``epochs``, ``batch_size``, ``learning_rate``, ``lr_schedule`` + ``warmup_steps``,
  ``weight_decay``, ``grad_clip_norm``; LoRA ``rank``;
- pipelining: ``pipeline_depth`` steps stay in flight, results are read behind them;
- evaluation: ``eval_data`` or ``eval_split``, every ``eval_every`` steps and at the end;
- previews: greedy answers to ``sample_prompts`` every ``sample_every`` steps;
- checkpoints: every ``save_every`` steps, at each epoch end (``save_each_epoch``), and ``final``
  (``LOG_DIR/checkpoints.jsonl``), the newest ``keep_last`` kept; ``resume=True`` continues
  a killed or interrupted run exactly (a finished one returns its recorded result);
  a ``log_dir`` holding a run is refused unless ``resume`` or ``overwrite``;
- logging: ``LOG_DIR/metrics.jsonl`` (steps, evals), ``LOG_DIR/samples.jsonl`` (previews),
  a progress bar, ``callbacks``, ``wandb_project``.

    result = tk.sft.train(tk.sft.Config(data="chats.jsonl", log_dir="runs/a"),
                          service=tk.connect("mock"))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit._sync import raise_if_stopped, run_blocking, run_in_thread
from tinkerkit.train import sft_data
from tinkerkit.train.batching import Cursor, batches_per_epoch, iterate
from tinkerkit.train.fingerprint import records_fingerprint
from tinkerkit.train.metrics import MetricsLogger
from tinkerkit.train.pipeline import Pipeline
from tinkerkit.train.schedules import learning_rate
from tinkerkit.train.session import (
    Checkpointer,
    RunResult,
    Session,
    next_cursor,
    open_prepared_session,
    public_config,
    start_run,
)
from tinkerkit.train.sft_config import Config, check_config, run_identity


@dataclass
class Result(RunResult):
    @property
    def final_loss(self) -> float | None:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[-1] if losses else None


def train(config: Config, service: Any = None) -> Result:
    """Run SFT to completion (or continue it with ``resume=True``); works in notebooks.

    Example:
        >>> result = train(Config(data="chats.jsonl", epochs=1, log_dir="runs/a"),
        ...                service=tk.connect("mock"))
        >>> result.sampler_path
        'tinker://.../sampler_weights/final'
    """
    return run_blocking(lambda: _train(config, service))


async def train_async(config: Config, service: Any = None) -> Result:
    """``train`` for async code: ``result = await tk.sft.train_async(config)``."""
    return await run_in_thread(lambda: _train(config, service))


def _datums(
    config: Config,
    records: Sequence[sft_data.Record],
    eval_records: Sequence[sft_data.Record] | None,
    tokenizer: Any,
) -> tuple[list[types.Datum], list[types.Datum]]:
    """(training datums, eval datums): built with the model's tokenizer, then checked."""
    datums = sft_data.to_datums(records, tokenizer, config.train_on, config.max_length)
    datums, eval_datums = sft_data.split(datums, config.eval_split, config.seed)
    if eval_records is not None:
        eval_datums = sft_data.to_datums(
            eval_records, tokenizer, config.train_on, config.max_length
        )
    sft_data.check(datums, tokenizer, "data")
    return datums, eval_datums


def _train(config: Config, service: Any) -> Result:
    check_config(config)
    log_dir = Path(config.log_dir)
    # Read and validate the data and the log folder before anything is created: a
    # refused run leaves no files, here or under TINKERKIT_HOME.
    records = sft_data.load(config.data)
    eval_records = sft_data.load(config.eval_data) if config.eval_data is not None else None
    identity = run_identity(config, records_fingerprint(records))
    run = start_run(config, identity)
    if run.finished:
        return run.recorded(Result)

    session, tokenizer, (datums, eval_datums) = open_prepared_session(
        service, config, run, lambda tok: _datums(config, records, eval_records, tok)
    )
    session.begin({**identity, "tokens": sft_data.fingerprint(datums)}, public_config(config))
    start, start_step = session.start, session.start_step

    loop = _Loop(config, session, tokenizer, eval_datums)
    per_epoch = batches_per_epoch(len(datums), config.batch_size)
    total = per_epoch * config.epochs
    metrics = session.metrics(config, total)
    try:
        step = start_step
        for cursor, batch in iterate(datums, config.batch_size, config.epochs, config.seed, start):
            raise_if_stopped()
            step += 1
            lr = learning_rate(
                config.learning_rate, step - 1, total, config.lr_schedule, config.warmup_steps
            )
            loop.submit_step(step, cursor.epoch, batch, lr, metrics)
            following = next_cursor(cursor, per_epoch)
            if step == total:
                break
            if config.eval_every and step % config.eval_every == 0:
                loop.submit_eval(step, metrics)
            if config.sample_every and step % config.sample_every == 0:
                loop.submit_samples(step, metrics)
            epoch_end = following.batch == 0 and config.save_each_epoch
            if (config.save_every and step % config.save_every == 0) or epoch_end:
                name = f"epoch-{cursor.epoch + 1}" if epoch_end else f"step-{step:06d}"
                loop.checkpoints.submit(name, step, following)
        if eval_datums:
            loop.submit_eval(step, metrics)
        if config.sample_prompts:
            loop.submit_samples(step, metrics)
        final = loop.checkpoints.submit("final", step, Cursor(config.epochs, 0))
        loop.pipeline.drain()
    finally:
        metrics.close()
    return Result(
        final["state"], final["sampler"], log_dir, step, metrics.rows, samples=metrics.samples
    )


class _Loop:
    """The request side of the loop: submits work and says what to log when it lands."""

    def __init__(
        self, config: Config, session: Session, tokenizer: Any, eval_datums: list[types.Datum]
    ) -> None:
        self.config = config
        self.training = session.training
        self.tokenizer = tokenizer
        self.eval_datums = eval_datums
        self.pipeline = Pipeline(config.pipeline_depth)
        self.checkpoints = Checkpointer(session, self.pipeline, config.ttl_seconds)
        self._last_done = time.monotonic()

    def _adam(self, lr: float) -> types.AdamParams:
        return types.AdamParams(
            learning_rate=lr,
            weight_decay=self.config.weight_decay,
            grad_clip_norm=self.config.grad_clip_norm,
        )

    def submit_step(
        self, step: int, epoch: int, batch: list[types.Datum], lr: float, metrics: MetricsLogger
    ) -> None:
        fb = self.training.forward_backward(batch, "cross_entropy")
        opt = self.training.optim_step(self._adam(lr))
        weight = sum(float(sum(d.loss_fn_inputs["weights"].tolist())) for d in batch)
        tokens = sum(d.model_input.length for d in batch)

        def done(results: Mapping[str, Any]) -> None:
            now = time.monotonic()
            loss_sum = float(results["fb"].metrics["loss:sum"])
            metrics.log(
                {
                    "step": step,
                    "epoch": epoch + 1,
                    "loss": loss_sum / max(weight, 1e-9),
                    "loss_sum": loss_sum,
                    "lr": lr,
                    "tokens": tokens,
                    "trained_tokens": weight,
                    "examples": len(batch),
                    "step_time": now - self._last_done,
                }
            )
            self._last_done = now

        self.pipeline.submit({"fb": fb, "opt": opt}, done)

    def submit_eval(self, step: int, metrics: MetricsLogger) -> None:
        if not self.eval_datums:
            return
        future = self.training.forward(self.eval_datums, "cross_entropy")
        weight = sum(float(sum(d.loss_fn_inputs["weights"].tolist())) for d in self.eval_datums)

        def done(results: Mapping[str, Any]) -> None:
            loss = float(results["eval"].metrics["loss:sum"]) / max(weight, 1e-9)
            metrics.log_event({"step": step, "eval_loss": loss})

        self.pipeline.submit({"eval": future}, done)

    def submit_samples(self, step: int, metrics: MetricsLogger) -> None:
        if not self.config.sample_prompts:
            return
        from tinkerkit.text import sample_text

        future = self.training.save_weights_and_get_sampling_client()

        def done(results: Mapping[str, Any]) -> None:
            sampler = results["sampler"]
            previews = [
                {
                    "prompt": prompt,
                    "completion": sample_text(
                        sampler, prompt, max_tokens=self.config.sample_max_tokens, temperature=0.0
                    )[0].text,
                }
                for prompt in self.config.sample_prompts
            ]
            for preview in previews:
                metrics.log_sample({"step": step, **preview})

        self.pipeline.submit({"sampler": future}, done)
