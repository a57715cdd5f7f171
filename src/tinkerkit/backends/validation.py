"""Check a whole request the way the service does: the size limits, then every datum.

The per-datum rules live in :mod:`tinkerkit.rules.datums` (shared with
``tinkerkit.data``); their names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence

from tinker import types

from tinkerkit.backends.limits import MAX_TOKENS_PER_REQUEST, check_datum_count
from tinkerkit.errors import BatchTooLargeError
from tinkerkit.models.registry import ModelSpec
from tinkerkit.rules.datums import (
    CheckedDatum,
    check_datum,
    check_tokens,
    dense_array,
    text_token_count,
)
from tinkerkit.rules.losses import LossSpec

__all__ = [
    "CheckedDatum",
    "check_batch",
    "check_datum",
    "check_tokens",
    "dense_array",
    "text_token_count",
]


def check_batch(
    data: Sequence[types.Datum], spec: ModelSpec, loss: LossSpec | None, name: str = ""
) -> list[CheckedDatum]:
    """Validate a whole request; the first problem raises. The size limits
    (``tinkerkit.backends.limits``) are checked first, so an oversized request is
    refused before any datum is converted."""
    check_datum_count(len(data))
    total = text_token_count(data)
    if total > MAX_TOKENS_PER_REQUEST:
        raise BatchTooLargeError(total, MAX_TOKENS_PER_REQUEST)
    return [check_datum(i, d, spec, loss, name) for i, d in enumerate(data)]
