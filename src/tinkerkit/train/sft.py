"""Supervised fine-tuning: the guide's ``sft_training`` loop, pipelined and resumable.

Every feature and its knob: docs/sft.md, "Features and their knobs".

    result = tk.sft.train(tk.sft.Config(data="chats.jsonl", log_dir="runs/a"),
                          service=tk.connect("mock"))
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tinker import types

from tinkerkit._sync import run_blocking, run_in_thread
from tinkerkit.protocols import ServiceClientLike
from tinkerkit.train import sft_data
from tinkerkit.train.batching import batches_per_epoch
from tinkerkit.train.fingerprint import records_fingerprint
from tinkerkit.train.run import Run, Step, SubmittedStep, every
from tinkerkit.train.schedules import learning_rate
from tinkerkit.train.session import RunResult
from tinkerkit.train.sft_config import Config

__all__ = ["Config", "Result", "train", "train_async"]


@dataclass
class Result(RunResult):
    @property
    def final_loss(self) -> float | None:
        losses = [m["loss"] for m in self.metrics if "loss" in m]
        return losses[-1] if losses else None


def train(config: Config, service: ServiceClientLike | None = None) -> Result:
    """Run SFT to completion (or continue it with ``resume=True``); works in notebooks.

    Example:
        >>> result = train(Config(data="chats.jsonl", epochs=1, log_dir="runs/a"),
        ...                service=tk.connect("mock"))
        >>> result.sampler_path
        'tinker://.../sampler_weights/final'
    """
    return run_blocking(lambda: _train(config, service))


async def train_async(config: Config, service: ServiceClientLike | None = None) -> Result:
    """``train`` for async code: ``result = await tk.sft.train_async(config)``."""
    return await run_in_thread(lambda: _train(config, service))


def _train(config: Config, service: ServiceClientLike | None) -> Result:
    # Read and validate the data before anything is created: bad input leaves no files.
    records = sft_data.load(config.data)
    eval_records = sft_data.load(config.eval_data) if config.eval_data is not None else None
    run = Run.start(config, config.run_identity(data=records_fingerprint(records)))
    if run.finished:
        return run.recorded(Result)
    datums, eval_datums = run.open(
        service, lambda tok: sft_data.prepare(config, records, eval_records, tok)
    )
    loop = _SFT(config, run, eval_datums)
    total = batches_per_epoch(len(datums), config.batch_size) * config.epochs
    with run.begin(total, depth=config.pipeline_depth, tokens=sft_data.fingerprint(datums)):
        for step in run.steps(datums, config.batch_size, config.epochs):
            run.submit(loop.submit(step, total), loop.finish)
            if step.last:
                break
            if every(config.eval_every, step):
                loop.evaluate(step.number)
            if every(config.sample_every, step):
                loop.preview(step.number)
            if config.save_each_epoch and step.ends_epoch:
                run.save(step, f"epoch-{step.epoch + 1}")
            elif run.save_due(step):
                run.save(step)
        loop.evaluate(run.step)
        loop.preview(run.step)
        return run.finish(Result)


class _SFT:
    """How an SFT step, an evaluation and a preview are submitted and finished."""

    def __init__(self, config: Config, run: Run, eval_datums: list[types.Datum]) -> None:
        self.config = config
        self.run = run
        self.eval_datums = eval_datums
        self._last_done = time.monotonic()

    def submit(self, step: Step[types.Datum], total: int) -> SubmittedStep[types.Datum]:
        c = self.config
        lr = learning_rate(c.learning_rate, step.number - 1, total, c.lr_schedule, c.warmup_steps)
        adam = types.AdamParams(
            learning_rate=lr, weight_decay=c.weight_decay, grad_clip_norm=c.grad_clip_norm
        )
        training = self.run.training
        fb = training.forward_backward(step.batch, "cross_entropy")
        return SubmittedStep(step, fb, training.optim_step(adam), lr)

    def finish(self, submitted: SubmittedStep[types.Datum]) -> dict[str, Any]:
        batch = submitted.step.batch
        loss_sum = float(submitted.forward_backward.result().metrics["loss:sum"])
        submitted.optim_step.result()
        weight = sft_data.trained_weight(batch)
        now = time.monotonic()
        step_time, self._last_done = now - self._last_done, now
        return {
            "step": submitted.step.number,
            "epoch": submitted.step.epoch + 1,
            "loss": loss_sum / max(weight, 1e-9),
            "loss_sum": loss_sum,
            "lr": submitted.lr,
            "tokens": sum(d.model_input.length for d in batch),
            "trained_tokens": weight,
            "examples": len(batch),
            "step_time": step_time,
        }

    def evaluate(self, step: int) -> None:
        """Held-out loss after ``step`` (when there is held-out data)."""
        if self.eval_datums:
            future = self.run.training.forward(self.eval_datums, "cross_entropy")
            self.run.submit_event((step, future), self._finish_eval)

    def _finish_eval(self, submitted: tuple[int, Any]) -> dict[str, Any]:
        step, future = submitted
        loss_sum = float(future.result().metrics["loss:sum"])
        weight = sft_data.trained_weight(self.eval_datums)
        return {"step": step, "eval_loss": loss_sum / max(weight, 1e-9)}

    def preview(self, step: int) -> None:
        """Greedy answers to ``sample_prompts`` from the weights after ``step``."""
        if self.config.sample_prompts:
            future = self.run.training.save_weights_and_get_sampling_client()
            self.run.submit_samples((step, future), self._finish_preview)

    def _finish_preview(self, submitted: tuple[int, Any]) -> list[dict[str, Any]]:
        from tinkerkit.text import sample_text

        step, future = submitted
        sampler, c = future.result(), self.config
        return [
            {
                "step": step,
                "prompt": prompt,
                "completion": sample_text(
                    sampler, prompt, max_tokens=c.sample_max_tokens, temperature=0.0
                )[0].text,
            }
            for prompt in c.sample_prompts
        ]
