"""Check ``tinker.types.Datum`` lists the way the service does, with better messages.

The fine-tuning guide's datums are the classic failures: no ``target_tokens`` at all,
``weights`` one token too long (prompt + completion instead of the shifted targets),
a ``labels`` key the service does not read. Each becomes an ``InvalidDatumError``
naming the datum index, the field, and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tinker import types

from tinkerkit.backends.engine import EngineInput
from tinkerkit.backends.losses import LossSpec
from tinkerkit.errors import (
    BatchTooLargeError,
    ContextLengthError,
    InvalidDatumError,
    TokenOutOfVocabularyError,
)
from tinkerkit.models.registry import ModelSpec

MAX_TOKENS_PER_REQUEST = 262_144

_SHIFT_HINT = (
    "For a sequence of tokens S, model_input is S[:-1] and target_tokens is S[1:], and "
    "weights align with target_tokens (tk.data.chat_datum / completion_datum do this)."
)


@dataclass
class CheckedDatum:
    engine_input: EngineInput
    inputs: dict[str, np.ndarray]
    """Every ``loss_fn_inputs`` field as a 1-D numpy array (target_tokens int64, rest float64)."""


def model_input_tokens(index: int, model_input: types.ModelInput) -> list[int]:
    """The token ids of a text-only ``ModelInput``."""
    tokens: list[int] = []
    for chunk in model_input.chunks:
        if not isinstance(chunk, types.EncodedTextChunk):
            raise InvalidDatumError(
                index,
                f"model_input has a {type(chunk).__name__}; the offline backends take text "
                "tokens only (EncodedTextChunk).",
            )
        tokens.extend(int(t) for t in chunk.tokens)
    return tokens


def check_tokens(index: int, field: str, tokens: np.ndarray, spec: ModelSpec) -> None:
    if tokens.size == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0:
        raise TokenOutOfVocabularyError(index, field, low, spec.vocab_size)
    if high >= spec.vocab_size:
        raise TokenOutOfVocabularyError(index, field, high, spec.vocab_size)


def _field(index: int, datum: types.Datum, key: str, length: int) -> np.ndarray:
    tensor = datum.loss_fn_inputs[key]
    array = tensor.to_numpy(pad_value=0) if isinstance(tensor, types.TensorData) else tensor
    array = np.asarray(array)
    if array.ndim != 1 or array.shape[0] != length:
        shape = tuple(array.shape)
        raise InvalidDatumError(
            index,
            f"loss_fn_inputs[{key!r}] has shape {shape} but model_input has {length} tokens; "
            f"they must match ({length},).",
            _SHIFT_HINT,
        )
    if not np.all(np.isfinite(array)):
        raise InvalidDatumError(index, f"loss_fn_inputs[{key!r}] contains NaN or infinity.")
    if key == "target_tokens":
        return array.astype(np.int64)
    return array.astype(np.float64)


def check_datum(
    index: int, datum: types.Datum, spec: ModelSpec, loss: LossSpec | None
) -> CheckedDatum:
    """Validate one datum for ``loss`` (``None``: a custom loss, any extra keys allowed)."""
    if not isinstance(datum, types.Datum):
        raise InvalidDatumError(
            index, f"expected a tinker.types.Datum, got {type(datum).__name__}."
        )
    tokens = np.asarray(model_input_tokens(index, datum.model_input), dtype=np.int64)
    length = len(tokens)
    if length == 0:
        raise InvalidDatumError(index, "model_input is empty.")
    if length > spec.max_context_length:
        raise ContextLengthError(index, length, spec.max_context_length)
    check_tokens(index, "model_input", tokens, spec)
    present = set(datum.loss_fn_inputs)
    required = loss.required if loss else ("target_tokens",)
    for key in required:
        if key not in present:
            hint = _SHIFT_HINT if key == "target_tokens" else ""
            raise InvalidDatumError(index, f"loss_fn_inputs is missing {key!r}.", hint)
    if loss is not None:
        extra = present - set(loss.required) - set(loss.optional)
        if extra:
            accepted = ", ".join((*loss.required, *loss.optional))
            raise InvalidDatumError(
                index,
                f"loss_fn_inputs has {sorted(extra)}, which this loss does not read "
                f"(it takes {accepted}).",
                "Use forward_backward_custom for losses that need other inputs.",
            )
    inputs = {key: _field(index, datum, key, length) for key in present}
    check_tokens(index, "target_tokens", inputs["target_tokens"], spec)
    if "weights" not in inputs:
        inputs["weights"] = np.ones(length, dtype=np.float64)
    return CheckedDatum(EngineInput(tokens, inputs["target_tokens"]), inputs)


def check_batch(
    data: Sequence[types.Datum], spec: ModelSpec, loss: LossSpec | None
) -> list[CheckedDatum]:
    """Validate a whole request; the first problem raises."""
    checked = [check_datum(i, d, spec, loss) for i, d in enumerate(data)]
    total = sum(len(c.engine_input.tokens) for c in checked)
    if total > MAX_TOKENS_PER_REQUEST:
        raise BatchTooLargeError(total, MAX_TOKENS_PER_REQUEST)
    return checked
