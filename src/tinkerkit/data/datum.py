"""The one place the next-token shift happens."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tinker import types


def shifted_datum(tokens: Sequence[int], token_weights: Sequence[float]) -> types.Datum:
    """A cross-entropy datum from a full token sequence and a weight per token.

    ``token_weights[i]`` says whether token ``i`` is trained on; the datum predicts each
    token from the ones before it: ``model_input = tokens[:-1]``,
    ``target_tokens = tokens[1:]``, ``weights = token_weights[1:]``.

    Example:
        >>> d = shifted_datum([5, 6, 7], [0, 1, 1])
        >>> d.model_input.to_ints(), d.loss_fn_inputs["target_tokens"].tolist()
        ([5, 6], [6, 7])
    """
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
