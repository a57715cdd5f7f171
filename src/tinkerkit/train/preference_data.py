"""Preference pairs → the datums DPO and reward models train on (checked), like ``sft_data``.

pairs = load_pairs("pairs.jsonl")
train_items, eval_items, flat = to_items(pairs, [], tokenizer, "dpo", 0.1, seed=0)
refs, eval_refs = reference_scores(service, config, train_items, eval_data)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit.data.builders import preference_datums, reward_datum
from tinkerkit.data.loaders import load_preference_pairs, validate_record
from tinkerkit.data.schemas import PreferencePair
from tinkerkit.data.sources import coerce_records
from tinkerkit.protocols import ServiceClientLike, Tokenizer
from tinkerkit.train import losses, sft_data
from tinkerkit.train.batching import holdout
from tinkerkit.train.preference_config import DPOConfig, Objective


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
    pairs: Sequence[PreferencePair], tokenizer: Tokenizer, objective: Objective
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


def to_items(
    pairs: list[PreferencePair],
    eval_pairs: list[PreferencePair],
    tokenizer: Tokenizer,
    objective: Objective,
    eval_split: float,
    seed: int,
) -> tuple[list[list[types.Datum]], list[list[types.Datum]], list[types.Datum]]:
    """(training items, eval items, the training datums flat), checked; an item is the
    [chosen, rejected] datums of one pair. ``eval_split`` holds pairs out when there are
    no ``eval_pairs``."""
    train_items = _flatten(pairs, tokenizer, objective)
    if eval_split and not eval_pairs:
        kept, held = holdout(len(train_items), eval_split, seed)
        eval_items = [train_items[i] for i in held]
        train_items = [train_items[i] for i in kept]
    else:
        eval_items = _flatten(eval_pairs, tokenizer, objective)
    flat = [d for item in train_items for d in item]
    sft_data.check(flat, tokenizer, "data")
    return train_items, eval_items, flat


def reference_scores(
    service: ServiceClientLike,
    config: DPOConfig,
    items: list[list[types.Datum]],
    eval_data: list[types.Datum],
) -> tuple[list[list[Any]], list[Any]]:
    """DPO's reference logprobs: a [chosen, rejected] pair per item, and one per eval
    datum, from ``config.reference`` (a ``tinker://`` sampler path) or the base model.
    They never change, so they are computed once, all requests in flight together.
    Bradley–Terry has no reference: zeros.

    Example:
        >>> refs, eval_refs = reference_scores(service, DPOConfig(data=pairs), items, [])
        >>> len(refs) == len(items) and len(refs[0]) == 2
        True
    """
    if config.objective != "dpo":
        return [[0.0, 0.0] for _ in items], [0.0] * len(eval_data)
    if config.reference:
        reference = service.create_sampling_client(model_path=config.reference).result()
    else:
        reference = service.create_sampling_client(base_model=config.model).result()
    flat = losses.reference_logprobs(reference, [d for item in items for d in item])
    refs = [flat[i : i + 2] for i in range(0, len(flat), 2)]
    return refs, losses.reference_logprobs(reference, eval_data) if eval_data else []
