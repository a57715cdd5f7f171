"""The one place the next-token shift happens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tinker import types


def shifted_datum(
    tokens: Sequence[int] | types.ModelInput, token_weights: Sequence[float]
) -> types.Datum:
    """A cross-entropy datum from a full sequence and a weight per position.

    ``token_weights[i]`` says whether position ``i`` is trained on; the datum predicts
    each token from the ones before it: ``model_input = tokens[:-1]``,
    ``target_tokens = tokens[1:]``, ``weights = token_weights[1:]``.

    ``tokens`` may be a ``ModelInput`` with images (``ImageChunk``s with
    ``expected_tokens``), as tinker-cookbook's ``datum_from_model_input_weights`` takes
    it: an image keeps its place in ``model_input`` (only the last text token goes), its
    positions get target 0 and weight 0, and the sequence must end with text.

    Example:
        >>> d = shifted_datum([5, 6, 7], [0, 1, 1])
        >>> d.model_input.to_ints(), d.loss_fn_inputs["target_tokens"].tolist()
        ([5, 6], [6, 7])
    """
    if isinstance(tokens, types.ModelInput):
        return _shifted_chunks(list(tokens.chunks), token_weights)
    if len(tokens) != len(token_weights):
        raise ValueError(
            f"{len(tokens)} tokens but {len(token_weights)} weights: give one weight per token"
        )
    if len(tokens) < 2:
        raise ValueError("a training sequence needs at least 2 tokens")
    # Built without pydantic re-validation: the ids are plain ints we just produced, and
    # validating every token of every datum costs as much as tokenizing it.
    ids = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
    if ids and not all(type(t) is int for t in (ids[0], ids[-1])):
        ids = [int(t) for t in ids]
    chunk = types.EncodedTextChunk.model_construct(tokens=ids[:-1], type="encoded_text")
    return types.Datum(
        model_input=types.ModelInput.model_construct(chunks=[chunk]),
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_numpy(np.asarray(ids[1:], dtype=np.int64)),
            "weights": types.TensorData.from_numpy(np.asarray(token_weights[1:], dtype=np.float32)),
        },
    )


def _shifted_chunks(
    chunks: list[types.ModelInputChunk], token_weights: Sequence[float]
) -> types.Datum:
    length = sum(chunk.length for chunk in chunks)
    if length != len(token_weights):
        raise ValueError(
            f"{length} positions but {len(token_weights)} weights: give one weight per "
            "position (an image takes its expected_tokens positions)"
        )
    if length < 2:
        raise ValueError("a training sequence needs at least 2 tokens")
    last = chunks[-1]
    if not isinstance(last, types.EncodedTextChunk):
        raise ValueError(
            "the sequence ends with an image, which has nothing after it to predict: "
            "drop it or end the sequence with text"
        )
    targets: list[int] = []
    image_positions = np.zeros(length, dtype=bool)
    for chunk in chunks:
        if isinstance(chunk, types.EncodedTextChunk):
            targets.extend(int(t) for t in chunk.tokens)
        else:
            image_positions[len(targets) : len(targets) + chunk.length] = True
            targets.extend([0] * chunk.length)
    inputs = chunks[:-1]
    if last.length > 1:
        inputs.append(types.EncodedTextChunk(tokens=list(last.tokens[:-1])))
    weights = np.array(token_weights, dtype=np.float32)  # a copy: zeroed below
    weights[image_positions] = 0.0  # no loss where the target is an image position
    return types.Datum(
        model_input=types.ModelInput(chunks=inputs),
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_numpy(np.asarray(targets[1:], dtype=np.int64)),
            "weights": types.TensorData.from_numpy(weights[1:]),
        },
    )
