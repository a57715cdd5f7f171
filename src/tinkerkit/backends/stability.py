"""Sequences recorded at sampling time for ``stable_reinforce`` (``record_stability_info``).

A sampling client created with ``record_stability_info=True`` records every sequence it
returns under its ``sequence_id``: the prompt it continued, the sampled tokens and the
sampler's logprob of each. A training request names those sequences in its datums'
provenance spans; ``provenance_inputs`` checks those spans against the records and
reads the sampler's logprobs for the loss. As on the service, records belong to the
session (here: one ``tk.connect(...)``) and expire a day after their last use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.errors import InvalidDatumError
from tinkerkit.rules.losses import RECORDED_LOGPROBS, SAMPLED

RECORD_LIFETIME_S = 24 * 3600.0


@dataclass
class SequenceRecord:
    """One recorded sequence: the prompt it continued and what the sampler drew."""

    sequence_id: str
    prompt: np.ndarray  # int64 (P,)
    tokens: np.ndarray  # int64 (S,)
    logprobs: np.ndarray  # float32 (S,): the sampler's logprob of each sampled token
    last_used: float = field(default_factory=time.monotonic)


class SequenceRecords:
    """``sequence_id`` → ``SequenceRecord``, thread-safe, with the service's one-day expiry.

    Example:
        >>> records = SequenceRecords()
        >>> records.record("s1", [1, 2], [3, 4], [-0.5, -0.7])
        >>> records.get("s1").tokens.tolist()
        [3, 4]
    """

    def __init__(self, lifetime_s: float = RECORD_LIFETIME_S) -> None:
        self._lifetime = lifetime_s
        self._records: dict[str, SequenceRecord] = {}
        self._lock = threading.Lock()

    def record(
        self,
        sequence_id: str,
        prompt: Sequence[int],
        tokens: Sequence[int],
        logprobs: Sequence[float],
    ) -> None:
        entry = SequenceRecord(
            sequence_id,
            np.asarray(prompt, dtype=np.int64),
            np.asarray(tokens, dtype=np.int64),
            np.asarray(logprobs, dtype=np.float32),
        )
        with self._lock:
            self._expire()
            self._records[sequence_id] = entry

    def get(self, sequence_id: str) -> SequenceRecord | None:
        """The record, refreshed (its day restarts), or None if unknown or expired."""
        with self._lock:
            self._expire()
            entry = self._records.get(sequence_id)
            if entry is not None:
                entry.last_used = time.monotonic()
            return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._lifetime
        stale = [k for k, v in self._records.items() if v.last_used < cutoff]
        for key in stale:
            del self._records[key]


def provenance_inputs(
    index: int, datum: types.Datum, targets: np.ndarray, records: SequenceRecords
) -> dict[str, np.ndarray]:
    """What ``stable_reinforce`` reads from the records for one datum.

    Checks the datum's provenance against this session's records: every named
    sequence is recorded, every span stays inside its recorded prompt / sampled
    tokens, and targets under a ``SampledProvenanceSpan`` are the recorded sampled
    tokens (targets under a ``PromptProvenanceSpan`` are not checked: the cookbook
    puts dummy 0s there). Returns, per target row, the sampler's recorded logprob
    (``losses.RECORDED_LOGPROBS``, 0 on prompt rows) and 1 where the row is a sampled
    token (``losses.SAMPLED``). Tiling was checked with the datum.

    Example:
        >>> provenance_inputs(0, datum, targets, context.sequences)[losses.SAMPLED]
    """
    rows = targets.shape[0]
    recorded_lp = np.zeros(rows, dtype=np.float64)
    sampled = np.zeros(rows, dtype=np.float64)
    found: dict[str, SequenceRecord] = {}
    for field_name in ("model_input_spans", "loss_fn_input_spans"):
        position = 0
        for span in getattr(datum, field_name) or []:
            record = found.get(span.sequence_id) or _lookup(index, field_name, span, records)
            found[span.sequence_id] = record
            is_sampled = isinstance(span, types.SampledProvenanceSpan)
            end = span.offset + span.length
            available = len(record.tokens) if is_sampled else len(record.prompt)
            if end > available:
                what = "sampled tokens" if is_sampled else "prompt tokens"
                raise InvalidDatumError(
                    index,
                    f"{field_name}: {type(span).__name__}(sequence_id={span.sequence_id!r}, "
                    f"offset={span.offset}, length={span.length}) ends at {end}, but that "
                    f"sequence has {available} recorded {what}.",
                )
            if is_sampled and field_name == "loss_fn_input_spans" and span.length:
                rows_here = slice(position, position + span.length)
                _check_sampled_targets(index, targets[rows_here], record, span, position)
                recorded_lp[rows_here] = record.logprobs[span.offset : end]
                sampled[rows_here] = 1.0
            position += span.length
    return {RECORDED_LOGPROBS: recorded_lp, SAMPLED: sampled}


def _lookup(index: int, field_name: str, span: Any, records: SequenceRecords) -> SequenceRecord:
    record = records.get(span.sequence_id)
    if record is None:
        raise InvalidDatumError(
            index,
            f"{field_name} names sequence_id {span.sequence_id!r}, which is not recorded in "
            "this session (unknown, sampled without record_stability_info=True, from another "
            "session, or expired: a record lasts one day after its last use).",
            "Sample with a client created with record_stability_info=True and name its "
            "SampledSequence.sequence_id.",
        )
    return record


def _check_sampled_targets(
    index: int, targets: np.ndarray, record: SequenceRecord, span: Any, position: int
) -> None:
    expected = record.tokens[span.offset : span.offset + span.length]
    wrong = np.flatnonzero(targets != expected)
    if wrong.size:
        k = int(wrong[0])
        raise InvalidDatumError(
            index,
            f"target_tokens[{position + k}] is {int(targets[k])}, but the "
            f"SampledProvenanceSpan says it is sampled token {span.offset + k} of sequence "
            f"{span.sequence_id!r}, which is {int(expected[k])}.",
            "Targets under a SampledProvenanceSpan must be the sampled tokens themselves.",
        )
    if len(record.logprobs) < span.offset + span.length:
        raise InvalidDatumError(
            index,
            f"sequence {span.sequence_id!r} was recorded without sampler logprobs for its "
            "sampled tokens.",
        )
