"""Datums as a notebook shows them: every token, the trained ones highlighted, weights shown.

``show_datum`` returns a ``DatumView``: a ``str`` (so ``print`` and comparisons work as
before) that a notebook renders as HTML when a cell ends with it. A bare
``tinker.types.Datum`` at the end of a cell renders the same way with token ids in place
of text (it has no tokenizer), once ``tinkerkit.data`` is imported in the kernel.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.protocols import Tokenizer
from tinkerkit.rules.datums import dense_array


def datum_tokens(datum: types.Datum) -> tuple[int, list[int], list[float]]:
    """(first input token, target tokens, each target's weight).

    The sequence is the first input token followed by every target; ``(N, K)`` top-K
    targets are shown by slot 0 with the sum of the slots' absolute weights.
    """
    tokens = datum.model_input.to_ints()
    target_array = dense_array(0, "target_tokens", datum.loss_fn_inputs["target_tokens"])
    weights_td = datum.loss_fn_inputs.get("weights")
    weight_array = (
        dense_array(0, "weights", weights_td)
        if weights_td is not None
        else np.ones(target_array.shape)
    )
    targets = [int(t) for t in target_array.reshape(len(target_array), -1)[:, 0]]
    weights = [float(np.abs(w).sum()) for w in weight_array.reshape(len(weight_array), -1)]
    return (tokens[0] if tokens else -1), targets, weights


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
    first, targets, weights = datum_tokens(datum)
    show = decode or str
    top = max(weights, default=0.0) or 1.0
    plain = _plain(weights)
    spans = [_span(first, show(first) if first >= 0 else "", None, top, plain)]
    spans += [_span(t, show(t), w, top, plain) for t, w in zip(targets, weights, strict=False)]
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
