"""Sequences recorded at sampling time for ``stable_reinforce`` (``record_stability_info``).

A sampling client created with ``record_stability_info=True`` records every sequence it
returns under its ``sequence_id``: the prompt it continued, the sampled tokens and the
sampler's logprob of each. A training request names those sequences in its datums'
provenance spans. As on the service, records belong to the session (here: one
``tk.connect(...)``) and expire a day after their last use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

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
