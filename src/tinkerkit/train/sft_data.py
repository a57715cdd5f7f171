"""SFT inputs: whatever the user gave (path, chats, datums) → validated datums."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit.data.builders import completion_datum
from tinkerkit.data.chat import TrainOn, chat_datums
from tinkerkit.data.inspect import check_datums
from tinkerkit.data.loaders import (
    first_keys,
    load_chat_jsonl,
    load_prompt_completions,
    validate_record,
)
from tinkerkit.data.schemas import Conversation, PromptCompletion
from tinkerkit.data.sources import coerce_records
from tinkerkit.errors import DataError
from tinkerkit.protocols import Tokenizer
from tinkerkit.train.batching import holdout
from tinkerkit.train.fingerprint import datum_bytes
from tinkerkit.train.sft_config import Config

Record = Conversation | PromptCompletion | types.Datum


def load(data: str | Path | Sequence[Any]) -> list[Record]:
    """Records from a file (chats, or prompt/completion pairs) or an in-memory list."""
    return coerce_records(data, from_file=_from_file, from_item=_record, empty="is empty")


def _from_file(data: str | Path) -> list[Record]:
    """Chats, or prompt/completion pairs when the first record is one: a file, a URL,
    or an SQLite table (``sqlite:///x.db?table=chats``)."""
    if {"prompt", "completion"} <= first_keys(data):
        return list(load_prompt_completions(data))
    return list(load_chat_jsonl(data))


def _record(item: Any, where: str) -> Record:
    if isinstance(item, types.Datum | Conversation | PromptCompletion):
        return item
    if isinstance(item, dict) and "messages" in item:
        return validate_record(Conversation, item, where)
    if isinstance(item, dict) and "prompt" in item:
        return validate_record(PromptCompletion, item, where)
    if isinstance(item, list):
        return validate_record(Conversation, {"messages": item}, where)
    raise DataError(where, None, None, f"unsupported record type {type(item).__name__}")


def to_datums(
    records: Sequence[Record], tokenizer: Tokenizer, train_on: TrainOn, max_length: int | None
) -> list[types.Datum]:
    chats = [r for r in records if isinstance(r, Conversation)]
    rendered = iter(chat_datums(chats, tokenizer, train_on=train_on, max_length=max_length))
    out = []
    for record in records:
        if isinstance(record, types.Datum):
            out.append(record)
        elif isinstance(record, Conversation):
            out.append(next(rendered))
        else:
            out.append(
                completion_datum(
                    record.prompt, record.completion, tokenizer, add_eos=True, max_length=max_length
                )
            )
    return out


def split(
    datums: list[types.Datum], fraction: float, seed: int
) -> tuple[list[types.Datum], list[types.Datum]]:
    """Hold out ``fraction`` of the datums (a fixed, seeded choice) for evaluation."""
    kept, held = holdout(len(datums), fraction, seed)
    return [datums[i] for i in kept], [datums[i] for i in held]


def check(datums: list[types.Datum], tokenizer: Tokenizer, what: str) -> None:
    if not datums:
        raise DataError(what, None, None, "has no examples left to train on")
    check_datums(datums, vocab_size=len(tokenizer))


def fingerprint(datums: Sequence[types.Datum]) -> str:
    """A hash of exactly what is trained on (tokens, targets, weights)."""
    digest = hashlib.sha256()
    for datum in datums:
        digest.update(datum_bytes(datum))
    return digest.hexdigest()[:16]


def trained_weight(datums: Sequence[types.Datum]) -> float:
    """The summed loss weights of ``datums``: what a ``loss:sum`` is divided by for a mean.

    Example:
        >>> trained_weight([chat_datum])   # its assistant tokens
        12.0
    """
    return sum(float(sum(d.loss_fn_inputs["weights"].tolist())) for d in datums)


def prepare(
    config: Config,
    records: Sequence[Record],
    eval_records: Sequence[Record] | None,
    tokenizer: Tokenizer,
) -> tuple[list[types.Datum], list[types.Datum]]:
    """(training datums, eval datums): built with the model's tokenizer, then checked;
    the eval datums come from ``eval_records``, else ``config.eval_split`` of the data.

    Example:
        >>> datums, held_out = prepare(Config(data=chats, eval_split=0.1), chats, None, tok)
    """
    datums = to_datums(records, tokenizer, config.train_on, config.max_length)
    datums, eval_datums = split(datums, config.eval_split, config.seed)
    if eval_records is not None:
        eval_datums = to_datums(eval_records, tokenizer, config.train_on, config.max_length)
    check(datums, tokenizer, "data")
    return datums, eval_datums
