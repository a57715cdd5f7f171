"""Preference learning — DPO, and Bradley–Terry reward models — pipelined and resumable.

Features and their knobs (``DPOConfig``):
- data: preference pairs (JSONL/JSON/CSV path, or ``PreferencePair`` list) → chosen and
  rejected datums sharing the prompt tokens exactly (``tk.data.preference_datums``);
- ``objective``: ``"dpo"`` trains the policy directly; ``"bradley_terry"`` trains a
  reward model on ``tk.data.reward_datum`` pairs (``train_reward_model``);
- reference (DPO): the base model (default) or a ``tinker://`` sampler checkpoint
  (``reference``), scored once, before training;
- ``beta``, ``epochs``, ``batch_size`` (pairs per step), ``learning_rate``, ``rank``;
- held-out pairs (``eval_data`` or ``eval_split``): margin and accuracy at the start,
  every ``eval_every`` steps, and at the end;
- checkpoints every ``save_every`` steps and ``final``, the newest ``keep_last`` kept;
  ``resume=True`` continues exactly (a finished run returns its recorded result); a
  ``log_dir`` holding a run is refused unless ``resume`` or ``overwrite``;
- ``LOG_DIR/metrics.jsonl``: loss, accuracy, margin, chosen/rejected reward per step.

    result = tk.preference.train_dpo(tk.preference.DPOConfig(data="pairs.jsonl",
                                     log_dir="runs/dpo"), service=tk.connect("mock"))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit._sync import raise_if_stopped, run_blocking, run_in_thread
from tinkerkit.data.builders import preference_datums, reward_datum
from tinkerkit.data.loaders import load_preference_pairs, validate_record
from tinkerkit.data.schemas import PreferencePair
from tinkerkit.data.sources import coerce_records
from tinkerkit.train import losses, sft_data
from tinkerkit.train.batching import Cursor, batches_per_epoch, holdout, iterate
from tinkerkit.train.fingerprint import records_fingerprint
from tinkerkit.train.pipeline import Pipeline
from tinkerkit.train.preference_config import (
    DPOConfig,
    Objective,
    check_config,
    run_identity,
)
from tinkerkit.train.session import (
    Checkpointer,
    RunResult,
    next_cursor,
    open_prepared_session,
    public_config,
    start_run,
)


@dataclass
class DPOResult(RunResult):
    def evals(self) -> list[dict[str, Any]]:
        return [m for m in self.metrics if "eval_accuracy" in m]


def load_pairs(data: str | Path | Sequence[Any]) -> list[PreferencePair]:
    """Validated preference pairs from a file or a list; ``DataError`` names the bad one.

    Example:
        >>> load_pairs([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}])[0].chosen
        '4'
    """
    return coerce_records(
        data, from_file=load_preference_pairs, from_item=_pair, empty="has no preference pairs"
    )


def _pair(item: Any, where: str) -> PreferencePair:
    if isinstance(item, PreferencePair):
        return item
    return validate_record(PreferencePair, item, where)


def _flatten(
    pairs: Sequence[PreferencePair], tokenizer: Any, objective: Objective
) -> list[list[types.Datum]]:
    """One [chosen, rejected] list per pair: policy datums (DPO) or reward datums (BT)."""
    if objective == "dpo":
        return [list(preference_datums(pair, tokenizer)) for pair in pairs]
    return [
        [reward_datum(_prompt(pair), answer, tokenizer) for answer in (pair.chosen, pair.rejected)]  # type: ignore[arg-type]
        for pair in pairs
    ]


def _prompt(pair: PreferencePair) -> Any:
    if isinstance(pair.chosen, list):  # two whole chats: the prompt is all but the last turn
        return [m.model_dump() for m in pair.chosen[:-1]]
    return (
        pair.prompt if isinstance(pair.prompt, str) else [m.model_dump() for m in pair.prompt or []]
    )


def train_dpo(config: DPOConfig, service: Any = None) -> DPOResult:
    """Run DPO to completion (or continue it with ``resume=True``); works in notebooks.

    Example:
        >>> r = train_dpo(DPOConfig(data="pairs.jsonl", log_dir="runs/dpo"), tk.connect("mock"))
        >>> r.evals()[-1]["eval_accuracy"]
    """
    return run_blocking(lambda: _train(config, service))


def train_reward_model(config: DPOConfig, service: Any = None) -> DPOResult:
    """Train a Bradley–Terry reward model on preference pairs (``objective`` is set for you).

    Its score of a response is ``Σ weights · logprobs`` of ``tk.data.reward_datum``.

    Example:
        >>> r = train_reward_model(DPOConfig(data="pairs.jsonl", log_dir="runs/rm"))
    """
    from dataclasses import replace

    return run_blocking(lambda: _train(replace(config, objective="bradley_terry"), service))


async def train_dpo_async(config: DPOConfig, service: Any = None) -> DPOResult:
    return await run_in_thread(lambda: _train(config, service))


def _items(
    config: DPOConfig, pairs: list[Any], eval_pairs: list[Any], tokenizer: Any
) -> tuple[list[Any], list[Any], list[types.Datum]]:
    """(training items, eval items, the training datums flat), checked."""
    train_items = _flatten(pairs, tokenizer, config.objective)
    if config.eval_split and not eval_pairs:
        kept, held = holdout(len(train_items), config.eval_split, config.seed)
        eval_items = [train_items[i] for i in held]
        train_items = [train_items[i] for i in kept]
    else:
        eval_items = _flatten(eval_pairs, tokenizer, config.objective)
    flat = [d for item in train_items for d in item]
    sft_data.check(flat, tokenizer, "data")
    return train_items, eval_items, flat


def _train(config: DPOConfig, service: Any) -> DPOResult:
    check_config(config)
    pairs = load_pairs(config.data)
    eval_pairs = load_pairs(config.eval_data) if config.eval_data is not None else []
    identity = run_identity(config, records_fingerprint(pairs))
    run = start_run(config, identity)
    if run.finished:
        return run.recorded(DPOResult)
    session, _, (train_items, eval_items, flat) = open_prepared_session(
        service, config, run, lambda tok: _items(config, pairs, eval_pairs, tok)
    )
    service = session.service
    training = session.training
    session.begin({**identity, "tokens": sft_data.fingerprint(flat)}, public_config(config))

    eval_flat = [d for item in eval_items for d in item]
    train_refs: list[list[Any]]
    eval_refs: list[Any]
    if config.objective == "dpo":
        reference = (
            service.create_sampling_client(model_path=config.reference).result()
            if config.reference
            else service.create_sampling_client(base_model=config.model).result()
        )
        # Reference scores never change: compute them once, all requests in flight together.
        train_refs = _chunked(losses.reference_logprobs(reference, flat))
        eval_refs = losses.reference_logprobs(reference, eval_flat) if eval_flat else []
    else:
        train_refs = [[0.0, 0.0] for _ in train_items]
        eval_refs = [0.0] * len(eval_flat)

    def pair_loss(refs: list[Any]) -> losses.LossFn:
        if config.objective == "dpo":
            return losses.dpo(refs, config.beta)
        return losses.bradley_terry()

    pipeline = Pipeline(config.pipeline_depth)
    checkpoints = Checkpointer(session, pipeline, config.ttl_seconds)
    per_epoch = batches_per_epoch(len(train_items), config.batch_size)
    total = per_epoch * config.epochs
    metrics = session.metrics(config, total)
    indexed = list(range(len(train_items)))

    def evaluate(step: int) -> None:
        if not eval_flat:
            return
        future = training.forward(eval_flat, "cross_entropy")

        def done(results: Mapping[str, Any]) -> None:
            import torch

            lps = [torch.tensor(o["logprobs"].to_numpy()) for o in results["eval"].loss_fn_outputs]
            loss, m = pair_loss(eval_refs)(eval_flat, lps)
            margin = m.get("margin", m.get("reward_gap", 0.0))
            metrics.log_event(
                {
                    "step": step,
                    "eval_accuracy": m["accuracy"],
                    "eval_margin": margin,
                    "eval_loss": loss.item(),
                }
            )

        pipeline.submit({"eval": future}, done)

    try:
        step = session.start_step
        if step == 0:
            evaluate(0)
        for cursor, batch in iterate(
            indexed, config.batch_size, config.epochs, config.seed, session.start
        ):
            raise_if_stopped()
            step += 1
            data = [d for i in batch for d in train_items[i]]
            refs = [r for i in batch for r in train_refs[i]]
            fb = training.forward_backward_custom(data, pair_loss(refs))
            opt = training.optim_step(types.AdamParams(learning_rate=config.learning_rate))

            def done(
                results: Mapping[str, Any], step: int = step, epoch: int = cursor.epoch
            ) -> None:
                m = dict(results["fb"].metrics)
                m.pop("loss:sum", None)
                loss = m.pop("dpo_loss", None) if "dpo_loss" in m else m.pop("bt_loss", None)
                row = {"step": step, "epoch": epoch + 1, "loss": loss}
                metrics.log({**row, **m, "lr": config.learning_rate})

            pipeline.submit({"fb": fb, "opt": opt}, done)
            following = next_cursor(cursor, per_epoch)
            if step == total:
                break
            if config.eval_every and step % config.eval_every == 0:
                evaluate(step)
            if config.save_every and step % config.save_every == 0:
                checkpoints.submit(f"step-{step:06d}", step, following)
        evaluate(step)
        final = checkpoints.submit("final", step, Cursor(config.epochs, 0))
        pipeline.drain()
    finally:
        metrics.close()
    return DPOResult(
        final["state"], final["sampler"], session.log_dir, step, metrics.rows, metrics.samples
    )


def _chunked(refs: list[Any]) -> list[list[Any]]:
    return [refs[i : i + 2] for i in range(0, len(refs), 2)]
