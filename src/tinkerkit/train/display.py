"""A training result as a notebook shows it: steps, final figures and small curves.

``result_html`` is what a ``Result`` (SFT, RL, DPO) renders as when a cell ends with it:
a table of the run's figures (steps, final loss, first → last reward, held-out accuracy)
and a curve per series drawn as inline SVG, so nothing beyond the standard library is
needed to see a run learn.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_WIDTH, _HEIGHT, _PAD = 240, 56, 3

# Series drawn as curves, in order, when the run logged them: (metric key, label).
_CURVES = (
    ("loss", "loss"),
    ("reward_mean", "mean reward"),
    ("eval_loss", "held-out loss"),
    ("eval_accuracy", "held-out accuracy"),
)


def series(metrics: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """The finite values of ``key`` over the rows that have it, in order."""
    values = []
    for row in metrics:
        value = row.get(key)
        if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
            values.append(float(value))
    return values


def sparkline_svg(values: Sequence[float], *, label: str) -> str:
    """``values`` as a small inline SVG line (first and last value written beside it).

    Example:
        >>> sparkline_svg([3.0, 2.0, 1.5], label="loss").startswith("<svg")
        True
    """
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (_WIDTH - 2 * _PAD) / max(len(values) - 1, 1)
    points = " ".join(
        f"{_PAD + i * step:.1f},{_PAD + (high - v) / span * (_HEIGHT - 2 * _PAD):.1f}"
        for i, v in enumerate(values)
    )
    title = html.escape(f"{label}: {values[0]:.4g} → {values[-1]:.4g} over {len(values)} points")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="none" stroke="#ddd"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>'
        "</svg>"
    )


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def result_html(
    kind: str, *, steps: int, log_dir: Any, sampler_path: str, metrics: Sequence[Mapping[str, Any]]
) -> str:
    """The HTML of a finished run: its figures in a table, then one curve per series.

    Example:
        >>> result_html("SFT", steps=2, log_dir="runs/a", sampler_path="tinker://x",
        ...             metrics=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
        '<div class="tinkerkit-result">...final loss</th><td>1.0000</td>...'
    """
    rows = [("steps", str(steps))]
    curves = []
    for key, label in _CURVES:
        values = series(metrics, key)
        if not values:
            continue
        if key == "loss":
            rows.append(("final loss", _fmt(values[-1])))
        elif len(values) > 1:
            rows.append((label, f"{_fmt(values[0])} → {_fmt(values[-1])}"))
        else:
            rows.append((label, _fmt(values[-1])))
        if len(values) > 1:
            curves.append(
                f'<figure style="display:inline-block;margin:0 12px 0 0">'
                f"{sparkline_svg(values, label=label)}"
                f"<figcaption>{html.escape(label)}</figcaption></figure>"
            )
    rows += [("log folder", str(log_dir)), ("sampler weights", sampler_path)]
    table = "".join(
        f'<tr><th style="text-align:left">{html.escape(name)}</th>'
        f'<td style="text-align:left">{html.escape(value)}</td></tr>'
        for name, value in rows
    )
    return (
        f'<div class="tinkerkit-result"><strong>{html.escape(kind)} result</strong>'
        f"<table>{table}</table><div>{''.join(curves)}</div></div>"
    )
