"""A datum in a notebook: HTML with the trained tokens highlighted and weights visible,
while ``show_datum`` stays the plain text it was."""

from __future__ import annotations

from tinker import types

from tinkerkit.data import DatumView, show_datum
from tinkerkit.data.display import datum_html
from tinkerkit.models.tokenizer import byte_tokenizer


def _datum(weights: list[float]) -> types.Datum:
    tokens = [ord(c) for c in "hi yo!"]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
    )


def test_show_datum_is_text_that_renders_as_html() -> None:
    tok = byte_tokenizer()
    view = show_datum(_datum([0, 0, 1, 1, 0]), tok, color=False)
    assert isinstance(view, DatumView) and isinstance(view, str)
    assert view == "[5 targets, 2 trained]\nhi ⟦yo⟧!", view
    html = view._repr_html_()
    assert "[5 targets, 2 trained, weight 2]" in html
    assert html.count("background:rgba") == 2  # y and o
    assert 'title="token 121, weight 1"' in html and 'title="token 32, weight 0"' in html


def test_weights_other_than_one_are_written_and_shaded() -> None:
    html = datum_html(_datum([0, 0, 0.5, 2.0, 0]))  # no tokenizer: token ids
    assert "<sub>0.5</sub>" in html and "<sub>2</sub>" in html
    assert "rgba(40,167,69,0.51)" in html and "rgba(40,167,69,1.00)" in html
    assert ">121<sub>0.5</sub></span>" in html
