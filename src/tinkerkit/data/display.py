"""Datums as a notebook shows them: every token, the trained ones highlighted, weights shown.

``show_datum`` returns a ``DatumView``: a ``str`` (so ``print`` and comparisons work as
before) that a notebook renders as HTML when a cell ends with it. A bare
``tinker.types.Datum`` at the end of a cell renders the same way with token ids in place
of text (it has no tokenizer), once ``tinkerkit.data`` is imported in the kernel.

An image of the model input (an ``ImageChunk``) shows as one placeholder,
``[image 64×48, 70 tokens]``, in place of the positions it takes.
"""

from __future__ import annotations

import html
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.protocols import Tokenizer
from tinkerkit.rules.datums import dense_array


def datum_tokens(datum: types.Datum) -> tuple[int, list[int], list[float]]:
    """(first input token, target tokens, each target's weight).

    The sequence is the first input token followed by every target; ``(N, K)`` top-K
    targets are shown by slot 0 with the sum of the slots' absolute weights. The first
    input token is -1 when there is none (an empty input, or an image first).
    """
    first = -1
    for chunk in datum.model_input.chunks:
        if not isinstance(chunk, types.EncodedTextChunk):
            break
        if chunk.tokens:
            first = int(chunk.tokens[0])
            break
    target_array = dense_array(0, "target_tokens", datum.loss_fn_inputs["target_tokens"])
    weights_td = datum.loss_fn_inputs.get("weights")
    weight_array = (
        dense_array(0, "weights", weights_td)
        if weights_td is not None
        else np.ones(target_array.shape)
    )
    targets = [int(t) for t in target_array.reshape(len(target_array), -1)[:, 0]]
    weights = [float(np.abs(w).sum()) for w in weight_array.reshape(len(weight_array), -1)]
    return first, targets, weights


@dataclass(frozen=True)
class ImagePiece:
    """An image of the model input, as shown: its size in pixels (None when its bytes
    cannot be read) and the positions it takes."""

    width: int | None
    height: int | None
    tokens: int

    @property
    def label(self) -> str:
        size = f" {self.width}×{self.height}" if self.width is not None else ""
        return f"[image{size}, {self.tokens} tokens]"


Piece = tuple[int | ImagePiece, float | None]
"""A token id or an image, and its weight (None: the first position, input only)."""


def _positions(chunk: Any) -> int:
    return int(getattr(chunk, "expected_tokens", None) or 1)


def _image_piece(chunk: Any) -> ImagePiece:
    tokens = _positions(chunk)
    try:
        from PIL import Image

        with Image.open(io.BytesIO(chunk.data)) as opened:
            width, height = opened.size
    except Exception:  # no Pillow, an asset pointer, bytes that are not an image
        return ImagePiece(None, None, tokens)
    return ImagePiece(int(width), int(height), tokens)


def datum_pieces(datum: types.Datum) -> list[Piece]:
    """The datum's sequence as shown: the first input token, then each target with its
    weight, an image as one ``ImagePiece`` in place of its positions (its weight: the sum
    over them, 0 in a datum built by ``tk.data``). The first token is -1 when there is
    none.

    Example:
        >>> [piece for piece, _ in datum_pieces(datum)][6:9]
        [261, ImagePiece(width=64, height=48, tokens=70), 263]
    """
    first, targets, weights = datum_tokens(datum)
    images: dict[int, Any] = {}
    position = 0
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, types.EncodedTextChunk):
            position += len(chunk.tokens)
        else:
            images[position] = chunk
            position += _positions(chunk)
    # Position p of the sequence: p = 0 is the first input, p >= 1 is target p - 1.
    pieces: list[Piece] = []
    p = 0
    while p <= len(targets):
        image = images.get(p)
        if image is not None:
            size = _positions(image)
            weight = sum(weights[p - 1 : p - 1 + size]) if p else None
            pieces.append((_image_piece(image), weight))
            p += size
            continue
        pieces.append((targets[p - 1], weights[p - 1]) if p else (first, None))
        p += 1
    return pieces


def _plain(weights: Sequence[float]) -> bool:
    return all(w in (0.0, 1.0) for w in weights)


def datum_html(datum: types.Datum, decode: Callable[[int], str] | None = None) -> str:
    """The datum as HTML: one box per token, trained ones green (darker = more weight).

    Hovering a token shows its id and weight; weights other than 0 and 1 are also written
    under their tokens. ``decode`` turns one token id into text (default: the id).

    Example:
        >>> datum_html(datum, lambda t: tok.decode([t]))
        '<div class="tinkerkit-datum"><div>[12 targets, 3 trained, weight 3]</div>...'
    """
    _, targets, weights = datum_tokens(datum)
    show = decode or str
    top = max(weights, default=0.0) or 1.0
    plain = _plain(weights)
    spans = [
        _image_span(piece, weight)
        if isinstance(piece, ImagePiece)
        else _span(piece, show(piece) if piece >= 0 else "", weight, top, plain)
        for piece, weight in datum_pieces(datum)
    ]
    n_trained = sum(1 for w in weights if w != 0)
    header = f"[{len(targets)} targets, {n_trained} trained, weight {sum(weights):g}]"
    return (
        '<div class="tinkerkit-datum">'
        f"<div>{html.escape(header)} "
        '<span style="background:#8fd19e">trained</span> '
        '<span style="color:#888">not trained</span></div>'
        '<div style="font-family:monospace;white-space:pre-wrap;line-height:1.9">'
        f"{''.join(spans)}</div></div>"
    )


def _span(token: int, text: str, weight: float | None, top: float, plain: bool) -> str:
    shown = html.escape(text).replace("\n", "↵\n")
    if weight is None:  # the first input token: context, never a target
        title = f"token {token} (input only)"
        return f'<span title="{title}" style="color:#888">{shown}</span>'
    title = f"token {token}, weight {weight:g}"
    if weight == 0:
        return f'<span title="{title}" style="color:#888">{shown}</span>'
    alpha = 0.35 + 0.65 * min(abs(weight) / top, 1.0)
    label = "" if plain else f"<sub>{weight:g}</sub>"
    return (
        f'<span title="{title}" data-weight="{weight:g}" '
        f'style="background:rgba(40,167,69,{alpha:.2f});color:#000">{shown}{label}</span>'
    )


def _image_span(image: ImagePiece, weight: float | None) -> str:
    trained = "input only" if weight is None else f"weight {weight:g}"
    title = f"image, {image.tokens} positions ({trained})"
    return f'<span title="{title}" style="color:#888">{html.escape(image.label)}</span>'


class DatumView(str):
    """``show_datum``'s text; renders as HTML (``datum_html``) in a notebook."""

    datum: types.Datum
    tokenizer: Tokenizer

    def __new__(cls, text: str, datum: types.Datum, tokenizer: Tokenizer) -> DatumView:
        view = super().__new__(cls, text)
        view.datum = datum
        view.tokenizer = tokenizer
        return view

    def _repr_html_(self) -> str:
        return datum_html(self.datum, lambda t: self.tokenizer.decode([t]))


def _bare_datum_html(datum: types.Datum) -> str:
    return datum_html(datum)


def register_notebook_display() -> None:
    """Render bare ``types.Datum`` values as HTML in the running IPython shell, if any."""
    ipython = sys.modules.get("IPython")
    shell: Any = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    formatter = shell.display_formatter.formatters.get("text/html")
    if formatter is not None:
        formatter.for_type(types.Datum, _bare_datum_html)
