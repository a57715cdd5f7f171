"""Check datums before spending a request on them, and see what they train on.

``check_datums`` runs the same checks the offline backends run on every request
(missing ``target_tokens``, lengths that do not match, tokens out of vocabulary,
sequences over the context) plus one the service would accept silently: a datum whose
weights are all zero trains on nothing. ``show_datum`` is the guide's "check
tokenization / verify datum structure" debugging advice as one call.

Images (``ImageChunk``s) are checked as far as no model is known: readable png/jpeg of
the declared format, ``expected_tokens`` set, their positions counted as given; with
``vision=`` (how the model reads images) their token counts are checked as the service
checks them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.data.display import DatumView, ImagePiece, datum_pieces, datum_tokens
from tinkerkit.errors import DatumCheckError, InvalidDatumError, InvalidImageError
from tinkerkit.models.registry import ModelSpec
from tinkerkit.protocols import Tokenizer
from tinkerkit.rules.datums import check_datum
from tinkerkit.rules.images import Vision, decode
from tinkerkit.rules.losses import check_config, check_inputs, get_loss

_UNLIMITED = 1 << 62


def check_datums(
    datums: Sequence[types.Datum],
    *,
    vocab_size: int | None = None,
    max_length: int | None = None,
    loss_fn: str = "cross_entropy",
    vision: Vision | None = None,
) -> None:
    """Raise ``DatumCheckError`` listing every bad datum by index; return None if all pass.

    ``vision`` (``rules.images.Vision``, e.g. ``tk.data.vision.tokenizer_vision(tok)``)
    checks each image's ``expected_tokens`` against the model's image processor; without
    it the counts are taken as given.

    Example:
        >>> check_datums(datums, vocab_size=len(tok), max_length=2048)
    """
    spec = ModelSpec(
        "check", "check", vocab_size or _UNLIMITED, max_length or _UNLIMITED, vision=vision
    )
    loss = get_loss(loss_fn)
    config = check_config(loss_fn, None)
    problems: list[tuple[int, str]] = []
    for index, datum in enumerate(datums):
        try:
            if vision is None:
                datum = _images_as_given(index, datum)
            checked = check_datum(index, datum, spec, loss, loss_fn)
            if not loss.needs_provenance:  # those checks need the session's records
                check_inputs(loss_fn, index, checked.inputs, config)
        except (InvalidDatumError, InvalidImageError) as exc:
            problems.append((index, str(exc)))
            continue
        weights = checked.inputs.get("weights")
        if loss_fn == "cross_entropy" and weights is not None and not np.any(weights):
            problems.append((index, f"data[{index}]: every weight is 0, so it trains on nothing."))
    if problems:
        raise DatumCheckError(problems, len(datums))


def _images_as_given(index: int, datum: Any) -> Any:
    """``datum`` with each image (checked readable, ``expected_tokens`` set) standing as
    that many token-0 positions, for a check that knows no image processor."""
    chunks = getattr(getattr(datum, "model_input", None), "chunks", ())
    if all(isinstance(chunk, types.EncodedTextChunk) for chunk in chunks):
        return datum
    out: list[types.ModelInputChunk] = []
    for i, chunk in enumerate(chunks):
        if isinstance(chunk, types.EncodedTextChunk):
            out.append(chunk)
            continue
        where = f"data[{index}].model_input chunk {i}"
        if not isinstance(chunk, types.ImageChunk):
            raise InvalidImageError(f"{where} is a {type(chunk).__name__}; send an ImageChunk.")
        if chunk.expected_tokens is None:
            raise InvalidImageError(
                f"{where}: the ImageChunk has no expected_tokens, so its length is unknown; "
                "set it (tk.data.chat_datum does), or pass vision= to count it."
            )
        decode(chunk, where)
        out.append(types.EncodedTextChunk(tokens=[0] * chunk.expected_tokens))
    return dataclasses.replace(datum, model_input=types.ModelInput(chunks=out))


_GREEN = "\x1b[42;30m"
_RESET = "\x1b[0m"


def show_datum(datum: types.Datum, tokenizer: Tokenizer, *, color: bool | None = None) -> DatumView:
    """The datum's text with the trained tokens marked (green, or ⟦…⟧ without a terminal).

    A ``str``; in a notebook it renders as HTML, each token highlighted by its weight.

    Example:
        >>> print(show_datum(chat_datum(chat, tok), tok))
        <|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n⟦yo<|im_end|>⟧\\n
    """
    if color is None:
        color = sys.stdout.isatty()
    runs: list[tuple[bool, list[int | ImagePiece]]] = [(False, [])]
    for piece, weight in datum_pieces(datum):
        if weight is None:  # the first position: input only
            if isinstance(piece, ImagePiece) or piece >= 0:
                runs[0][1].append(piece)
            continue
        trained = weight != 0
        if runs[-1][0] == trained:
            runs[-1][1].append(piece)
        else:
            runs.append((trained, [piece]))
    parts = []
    for trained, run in runs:
        text = _decode(tokenizer, run)
        if trained:
            text = f"{_GREEN}{text}{_RESET}" if color else f"⟦{text}⟧"
        parts.append(text)
    _, targets, weights = datum_tokens(datum)
    n_trained = sum(1 for w in weights if w != 0)
    header = f"[{len(targets)} targets, {n_trained} trained]"
    return DatumView(header + "\n" + "".join(parts), datum, tokenizer)


def _decode(tokenizer: Tokenizer, run: list[int | ImagePiece]) -> str:
    """The run's text, each image as its label (``[image 64×48, 70 tokens]``)."""
    if not any(isinstance(piece, ImagePiece) for piece in run):
        return tokenizer.decode(run)
    text = ""
    tokens: list[int] = []
    for piece in run:
        if isinstance(piece, ImagePiece):
            text += str(tokenizer.decode(tokens)) + piece.label
            tokens = []
        else:
            tokens.append(piece)
    return text + str(tokenizer.decode(tokens))
