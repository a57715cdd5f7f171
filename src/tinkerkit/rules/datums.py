"""Check ``tinker.types.Datum`` lists the way the service does, with better messages.

The fine-tuning guide's datums are the classic failures: no ``target_tokens`` at all,
``weights`` one token too long (prompt + completion instead of the shifted targets),
a ``labels`` key the service does not read. Each becomes an ``InvalidDatumError``
naming the datum index, the field, and the fix.

These are the API's rules, so both ``tinkerkit.data`` (``check_datums``) and the offline
backends (every request, ``tinkerkit.backends.validation.check_batch``) import them from
here; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tinker import types

from tinkerkit.errors import (
    ContextLengthError,
    InvalidDatumError,
    TokenOutOfVocabularyError,
)
from tinkerkit.models.registry import ModelSpec
from tinkerkit.rules import images
from tinkerkit.rules.images import Picture
from tinkerkit.rules.losses import LossSpec

_SHIFT_HINT = (
    "For a sequence of tokens S, model_input is S[:-1] and target_tokens is S[1:], and "
    "weights align with target_tokens (tk.data.chat_datum / completion_datum do this)."
)


_TWO_D_KEYS = ("target_tokens", "weights")


@dataclass(frozen=True)
class EngineInput:
    """One datum as an engine sees it: input tokens and the targets they predict, and
    the images among the tokens (their positions hold the model's image token id)."""

    tokens: np.ndarray  # int64 (T,)
    targets: np.ndarray  # int64 (T,), or (T, K): K targets scored at each position
    pictures: tuple[Picture, ...] = ()


@dataclass
class CheckedDatum:
    engine_input: EngineInput
    inputs: dict[str, np.ndarray]
    """Every ``loss_fn_inputs`` field as a dense numpy array, ``(N,)`` or ``(N, K)``
    (target_tokens int64, the rest float64); ``weights`` defaults to ones."""


def _unweight_images(inputs: dict[str, np.ndarray], pictures: Sequence[Picture]) -> None:
    """No loss where the target is an image token: weights and advantages there are 0 and
    the target id (tinker-cookbook writes 0) is any valid id."""
    for picture in pictures:
        rows = slice(max(picture.start - 1, 0), picture.start - 1 + picture.tokens)
        for key in ("weights", "advantages"):
            if key in inputs:
                inputs[key][rows] = 0.0
        inputs["target_tokens"][rows] = 0


def check_tokens(index: int, field: str, tokens: np.ndarray, spec: ModelSpec) -> None:
    if tokens.size == 0:
        return
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0:
        raise TokenOutOfVocabularyError(index, field, low, spec.vocab_size)
    if high >= spec.vocab_size:
        raise TokenOutOfVocabularyError(index, field, high, spec.vocab_size)


def dense_array(index: int, key: str, tensor: types.TensorData) -> np.ndarray:
    """``tensor`` as a dense numpy array; sparse CSR (the SDK's encoding of 2-D torch
    ``target_tokens``/``weights``) densified with 0, without needing torch."""
    crow = tensor.sparse_crow_indices
    if crow is None:
        return np.asarray(tensor.to_numpy())
    shape = tensor.shape or []
    values = np.asarray(tensor._numpy).reshape(-1)
    cols = np.asarray(tensor.sparse_col_indices or [], dtype=np.int64)
    rows = np.asarray(crow, dtype=np.int64)
    ok = (
        len(shape) == 2
        and rows.shape == (shape[0] + 1,)
        and rows[0] == 0
        and rows[-1] == cols.size == values.size
        and bool(np.all(np.diff(rows) >= 0))
        and (cols.size == 0 or (int(cols.min()) >= 0 and int(cols.max()) < shape[1]))
    )
    if not ok:
        raise InvalidDatumError(
            index,
            f"loss_fn_inputs[{key!r}] is a malformed sparse CSR tensor (shape {shape}, "
            f"{rows.size} row pointers, {cols.size} column indices, {values.size} values).",
        )
    dense = np.zeros(shape, dtype=values.dtype)
    dense[np.repeat(np.arange(shape[0]), np.diff(rows)), cols] = values
    return dense


def _field(index: int, datum: types.Datum, key: str, length: int, two_d: bool) -> np.ndarray:
    array = dense_array(index, key, datum.loss_fn_inputs[key])
    shape = tuple(array.shape)
    if array.ndim == 2 and shape[0] == length and not two_d:
        raise InvalidDatumError(
            index,
            f"loss_fn_inputs[{key!r}] has shape {shape}; this loss takes ({length},).",
            "(N, K) target_tokens/weights are for cross_entropy and custom losses.",
        )
    if shape[:1] != (length,) or array.ndim not in (1, 2):
        expected = f"({length},) or ({length}, K)" if two_d else f"({length},)"
        raise InvalidDatumError(
            index,
            f"loss_fn_inputs[{key!r}] has shape {shape} but model_input has {length} tokens; "
            f"it must be {expected}.",
            _SHIFT_HINT,
        )
    if array.ndim == 2 and array.shape[1] == 0:
        raise InvalidDatumError(index, f"loss_fn_inputs[{key!r}] has K = 0 values per position.")
    if not np.all(np.isfinite(array)):
        raise InvalidDatumError(index, f"loss_fn_inputs[{key!r}] contains NaN or infinity.")
    if key == "target_tokens":
        return array.astype(np.int64)
    return array.astype(np.float64)


def _check_tiling(index: int, name: str, spans: Sequence[object], expected: int) -> None:
    total = sum(int(getattr(span, "length", 0)) for span in spans)
    if total != expected:
        raise InvalidDatumError(
            index,
            f"{name} cover {total} positions but the field has {expected}; the runs must tile "
            "it exactly.",
            "Build them with Datum.with_provenance(model_input=[...], loss_fn_inputs=[...]).",
        )


def _check_provenance(index: int, datum: types.Datum, length: int, required_by: str) -> None:
    """Spans, where given, tile model_input and the loss rows (both ``length`` long)."""
    if datum.model_input_spans is None or datum.loss_fn_input_spans is None:
        if required_by:
            raise InvalidDatumError(
                index,
                f"{required_by} needs provenance: model_input_spans and loss_fn_input_spans naming "
                "the sampled sequence behind every position; this datum has none.",
                "Sample with record_stability_info=True (e.g. training_client."
                "save_weights_and_get_sampling_client(record_stability_info=True)) and attach "
                "the SampledSequence.sequence_id with Datum.with_provenance(model_input=[...], "
                "loss_fn_inputs=[...]) (PromptProvenanceSpan / SampledProvenanceSpan).",
            )
        return
    _check_tiling(index, "model_input_spans", datum.model_input_spans, length)
    _check_tiling(index, "loss_fn_input_spans", datum.loss_fn_input_spans, length)


def check_datum(
    index: int, datum: types.Datum, spec: ModelSpec, loss: LossSpec | None, name: str = ""
) -> CheckedDatum:
    """Validate one datum for ``loss`` (``None``: a custom loss, any extra keys allowed).

    ``name`` is the loss's name, for messages. ``target_tokens``/``weights`` may be
    ``(N, K)`` for losses that take them (cross_entropy, custom losses).
    """
    if not isinstance(datum, types.Datum):
        raise InvalidDatumError(
            index, f"expected a tinker.types.Datum, got {type(datum).__name__}."
        )
    ids, pictures = images.read(datum.model_input, spec.vision, f"data[{index}].model_input")
    tokens = np.asarray(ids, dtype=np.int64)
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

    def may_be_2d(key: str) -> bool:
        return loss is None or (loss.accepts_2d and key in _TWO_D_KEYS)

    inputs = {key: _field(index, datum, key, length, may_be_2d(key)) for key in present}
    targets = inputs["target_tokens"]
    if "weights" not in inputs:
        inputs["weights"] = np.ones(targets.shape, dtype=np.float64)
    _unweight_images(inputs, pictures)
    check_tokens(index, "target_tokens", targets, spec)
    if loss is not None and inputs["weights"].shape != targets.shape:
        raise InvalidDatumError(
            index,
            f"loss_fn_inputs['weights'] has shape {inputs['weights'].shape} but target_tokens "
            f"has {targets.shape}; they must match.",
        )
    needs = loss is not None and loss.needs_provenance
    _check_provenance(index, datum, length, (name or "this loss") if needs else "")
    return CheckedDatum(EngineInput(tokens, targets, tuple(pictures)), inputs)


def text_token_count(data: Sequence[object]) -> int:
    """The tokens of every datum's ``model_input`` (or of every ``ModelInput``): text
    tokens, and the ``expected_tokens`` of image chunks; anything else counts 0.

    Example:
        >>> text_token_count([types.Datum(model_input=types.ModelInput.from_ints([1, 2]),
        ...                               loss_fn_inputs={})])
        2
    """
    total = 0
    for datum in data:
        is_input = isinstance(datum, types.ModelInput)
        model_input = datum if is_input else getattr(datum, "model_input", None)
        for chunk in getattr(model_input, "chunks", ()):
            if isinstance(chunk, types.EncodedTextChunk):
                total += len(chunk.tokens)
            elif isinstance(chunk, types.ImageChunk):
                total += chunk.expected_tokens or 0
    return total
