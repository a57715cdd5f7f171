"""The training side of an RL step: datums → forward_backward + optim_step → a metrics row.

Checkpoints go through the shared ``session.Checkpointer`` (``trainer.checkpoints``).

    trainer = Trainer(config, session, base_sampler=None)
    trainer.train_step(step, groups, row, metrics)
"""

from __future__ import annotations

import time
from typing import Any

from tinker import types

from tinkerkit.train.metrics import MetricsLogger
from tinkerkit.train.pipeline import Pipeline
from tinkerkit.train.rl_advantages import logprob_input, loss_call
from tinkerkit.train.rl_batch import build_batch, logprob_mismatch, signal_samples
from tinkerkit.train.rl_config import Config
from tinkerkit.train.rl_sampling import Sample, base_logprobs
from tinkerkit.train.session import Checkpointer, Session


class Trainer:
    """The training side of a step: datums → forward_backward + optim_step → metrics row."""

    def __init__(self, config: Config, session: Session, base_sampler: Any) -> None:
        self.config = config
        self.training = session.training
        self.base_sampler = base_sampler
        # Checkpoint lines are written once their saves land, during the next step.
        self.pipeline = Pipeline(depth=2)
        self.checkpoints = Checkpointer(session, self.pipeline, config.ttl_seconds)

    def train_step(
        self,
        step: int,
        groups: list[list[Sample]],
        row: dict[str, Any],
        metrics: MetricsLogger,
    ) -> None:
        """Advantages (and KL) → datums → one update; logs ``row`` with the step's figures."""
        config = self.config
        base_lps = None
        if self.base_sampler is not None:
            trained = signal_samples(groups)
            base_lps = dict(
                zip(
                    (id(s) for s in trained),
                    base_logprobs(self.base_sampler, trained),
                    strict=True,
                )
            )
        batch = build_batch(
            groups,
            loss=config.loss,
            scale_by_std=config.scale_advantages,
            kl_coef=config.kl_coef,
            base_logprobs=base_lps,
        )
        lr = config.learning_rate
        row.update(batch.stats)
        row.update({"lr": lr, "loss": 0.0, "datums": len(batch.datums)})
        if not batch.datums:
            # No group had signal: skip the update (an empty optim_step would still move
            # the weights through Adam's momentum).
            metrics.log({**row, "train_time": 0.0})
            return
        t0 = time.monotonic()
        futures: dict[str, Any] = {}
        if config.recompute_logprobs:
            futures["forward"] = self.training.forward(
                [logprob_input(d) for d in batch.datums], "cross_entropy"
            )
        loss_fn, loss_config = loss_call(config.loss, config.clip_low, config.clip_high)
        futures["fb"] = self.training.forward_backward(batch.datums, loss_fn, loss_config)
        futures["opt"] = self.training.optim_step(types.AdamParams(learning_rate=lr))
        results = {name: f.result() for name, f in futures.items()}
        trained_tokens = sum(len(s.tokens) for s in batch.samples)
        loss_sum = float(results["fb"].metrics["loss:sum"])
        row.update(
            {
                "loss": loss_sum / max(trained_tokens, 1),
                "loss_sum": loss_sum,
                "train_time": time.monotonic() - t0,
            }
        )
        if "forward" in results:
            row.update(logprob_mismatch(batch.samples, results["forward"].loss_fn_outputs))
        metrics.log(row)
