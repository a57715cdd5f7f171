"""Preference learning — DPO, and Bradley–Terry reward models — pipelined and resumable.

Every feature and its knob: docs/advanced.md, "Features and their knobs".

    result = tk.preference.train_dpo(tk.preference.DPOConfig(data="pairs.jsonl",
                                     log_dir="runs/dpo"), service=tk.connect("mock"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinker import types

from tinkerkit._sync import run_blocking, run_in_thread
from tinkerkit.protocols import ServiceClientLike
from tinkerkit.train import losses, sft_data
from tinkerkit.train.batching import batches_per_epoch
from tinkerkit.train.fingerprint import records_fingerprint
from tinkerkit.train.preference_config import DPOConfig, Objective
from tinkerkit.train.preference_data import load_pairs, reference_scores, to_items
from tinkerkit.train.run import Run, Step, SubmittedStep, every
from tinkerkit.train.session import RunResult

__all__ = [
    "DPOConfig",
    "DPOResult",
    "Objective",
    "load_pairs",
    "train_dpo",
    "train_dpo_async",
    "train_reward_model",
]


@dataclass
class DPOResult(RunResult):
    def evals(self) -> list[dict[str, Any]]:
        return [m for m in self.metrics if "eval_accuracy" in m]


def train_dpo(config: DPOConfig, service: ServiceClientLike | None = None) -> DPOResult:
    """Run DPO to completion (or continue it with ``resume=True``); works in notebooks.

    Example:
        >>> r = train_dpo(DPOConfig(data="pairs.jsonl", log_dir="runs/dpo"), tk.connect("mock"))
        >>> r.evals()[-1]["eval_accuracy"]
    """
    return run_blocking(lambda: _train(config, service))


def train_reward_model(config: DPOConfig, service: ServiceClientLike | None = None) -> DPOResult:
    """Train a Bradley–Terry reward model on preference pairs (``objective`` is set for you).

    Its score of a response is ``Σ weights · logprobs`` of ``tk.data.reward_datum``.

    Example:
        >>> r = train_reward_model(DPOConfig(data="pairs.jsonl", log_dir="runs/rm"))
    """
    reward_model = config.model_copy(update={"objective": "bradley_terry"})
    return run_blocking(lambda: _train(reward_model, service))


async def train_dpo_async(config: DPOConfig, service: ServiceClientLike | None = None) -> DPOResult:
    return await run_in_thread(lambda: _train(config, service))


def _train(config: DPOConfig, service: ServiceClientLike | None) -> DPOResult:
    pairs = load_pairs(config.data)
    eval_pairs = load_pairs(config.eval_data) if config.eval_data is not None else []
    run = Run.start(config, config.run_identity(data=records_fingerprint(pairs)))
    if run.finished:
        return run.recorded(DPOResult)
    items, eval_items, flat = run.open(
        service,
        lambda tok: to_items(
            pairs, eval_pairs, tok, config.objective, config.eval_split, config.seed
        ),
    )
    loop = _Preference(config, run, items, eval_items)
    total = batches_per_epoch(len(items), config.batch_size) * config.epochs
    with run.begin(total, depth=config.pipeline_depth, tokens=sft_data.fingerprint(flat)):
        if run.step == 0:
            loop.evaluate(0)
        for step in run.steps(range(len(items)), config.batch_size, config.epochs):
            run.submit(loop.submit(step), loop.finish)
            if step.last:
                break
            if every(config.eval_every, step):
                loop.evaluate(step.number)
            if run.save_due(step):
                run.save(step)
        loop.evaluate(run.step)
        return run.finish(DPOResult)


class _Preference:
    """How a preference step and an evaluation are submitted and finished."""

    def __init__(
        self,
        config: DPOConfig,
        run: Run,
        items: list[list[types.Datum]],
        eval_items: list[list[types.Datum]],
    ) -> None:
        self.config, self.run, self.items = config, run, items
        self.eval_data = [d for item in eval_items for d in item]
        self.refs, self.eval_refs = reference_scores(run.service, config, items, self.eval_data)

    def loss(self, refs: list[Any]) -> losses.LossFn:
        if self.config.objective == "dpo":
            return losses.dpo(refs, self.config.beta)
        return losses.bradley_terry()

    def submit(self, step: Step[int]) -> SubmittedStep[int]:
        data = [d for i in step.batch for d in self.items[i]]
        refs = [r for i in step.batch for r in self.refs[i]]
        training, lr = self.run.training, self.config.learning_rate
        fb = training.forward_backward_custom(data, self.loss(refs))
        return SubmittedStep(step, fb, training.optim_step(types.AdamParams(learning_rate=lr)), lr)

    def finish(self, submitted: SubmittedStep[int]) -> dict[str, Any]:
        metrics = dict(submitted.forward_backward.result().metrics)
        submitted.optim_step.result()
        metrics.pop("loss:sum", None)
        loss = metrics.pop("dpo_loss" if "dpo_loss" in metrics else "bt_loss", None)
        step = submitted.step
        return {
            "step": step.number,
            "epoch": step.epoch + 1,
            "loss": loss,
            **metrics,
            "lr": submitted.lr,
        }

    def evaluate(self, step: int) -> None:
        """Held-out accuracy, margin and loss after ``step`` (when pairs are held out)."""
        if self.eval_data:
            future = self.run.training.forward(self.eval_data, "cross_entropy")
            self.run.submit_event((step, future), self._finish_eval)

    def _finish_eval(self, submitted: tuple[int, Any]) -> dict[str, Any]:
        import torch

        step, future = submitted
        outputs = future.result().loss_fn_outputs
        logprobs = [torch.tensor(o["logprobs"].to_numpy()) for o in outputs]
        loss, m = self.loss(self.eval_refs)(self.eval_data, logprobs)
        return {
            "step": step,
            "eval_accuracy": m["accuracy"],
            "eval_margin": m.get("margin", m.get("reward_gap", 0.0)),
            "eval_loss": loss.item(),
        }
