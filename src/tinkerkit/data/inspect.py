"""Check datums before spending a request on them, and see what they train on.

``check_datums`` runs the same checks the offline backends run on every request
(missing ``target_tokens``, lengths that do not match, tokens out of vocabulary,
sequences over the context) plus one the service would accept silently: a datum whose
weights are all zero trains on nothing. ``show_datum`` is the guide's "check
tokenization / verify datum structure" debugging advice as one call.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from tinker import types

from tinkerkit.data.display import DatumView, datum_tokens
from tinkerkit.errors import DatumCheckError, InvalidDatumError
from tinkerkit.models.registry import ModelSpec
from tinkerkit.protocols import Tokenizer
from tinkerkit.rules.datums import check_datum
from tinkerkit.rules.losses import check_config, check_inputs, get_loss

_UNLIMITED = 1 << 62


def check_datums(
    datums: Sequence[types.Datum],
    *,
    vocab_size: int | None = None,
    max_length: int | None = None,
    loss_fn: str = "cross_entropy",
) -> None:
    """Raise ``DatumCheckError`` listing every bad datum by index; return None if all pass.

    Example:
        >>> check_datums(datums, vocab_size=len(tok), max_length=2048)
    """
    spec = ModelSpec("check", "check", vocab_size or _UNLIMITED, max_length or _UNLIMITED)
    loss = get_loss(loss_fn)
    config = check_config(loss_fn, None)
    problems: list[tuple[int, str]] = []
    for index, datum in enumerate(datums):
        try:
            checked = check_datum(index, datum, spec, loss, loss_fn)
            if not loss.needs_provenance:  # those checks need the session's records
                check_inputs(loss_fn, index, checked.inputs, config)
        except InvalidDatumError as exc:
            problems.append((index, str(exc)))
            continue
        weights = checked.inputs.get("weights")
        if loss_fn == "cross_entropy" and weights is not None and not np.any(weights):
            problems.append((index, f"data[{index}]: every weight is 0, so it trains on nothing."))
    if problems:
        raise DatumCheckError(problems, len(datums))


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
    first, targets, weights = datum_tokens(datum)
    runs: list[tuple[bool, list[int]]] = [(False, [first] if first >= 0 else [])]
    for token, weight in zip(targets, weights, strict=False):
        trained = weight != 0
        if runs[-1][0] == trained:
            runs[-1][1].append(token)
        else:
            runs.append((trained, [token]))
    parts = []
    for trained, run in runs:
        text = tokenizer.decode(run)
        if trained:
            text = f"{_GREEN}{text}{_RESET}" if color else f"⟦{text}⟧"
        parts.append(text)
    n_trained = sum(1 for w in weights if w != 0)
    header = f"[{len(targets)} targets, {n_trained} trained]"
    return DatumView(header + "\n" + "".join(parts), datum, tokenizer)
