"""Loss and learning-rate curves from ``metrics.jsonl`` (matplotlib, optional)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tinkerkit.atomic import atomic_path
from tinkerkit.errors import DataError
from tinkerkit.train.metrics import METRICS_FILE


def read_metric_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; a torn last line (a killed run) is left out, any
    other bad line is a ``DataError`` naming it.

    Example:
        >>> read_metric_rows(Path("runs/a/metrics.jsonl"))[0]["loss"]
        2.31
    """
    return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(str(path), None, None, "no such file: give the --log-dir of a training run")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot be read ({exc.strerror or exc})") from None
    lines = data.split(b"\n")
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            if number == len(lines):  # torn: the run was killed while writing it
                continue
            raise DataError(str(path), number, None, "is not a JSON metrics row") from None
        if not isinstance(row, dict):
            raise DataError(str(path), number, None, "is not a JSON object")
        rows.append((number, row))
    return rows


def _series(
    path: Path, rows: list[tuple[int, dict[str, Any]]], key: str
) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the rows that have it; a row without a numeric
    ``step`` or value is a ``DataError``."""
    steps: list[float] = []
    values: list[float] = []
    for number, row in rows:
        if key not in row:
            continue
        for field in ("step", key):
            value = row.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(
                    str(path), number, field, f"must be a number in a {key} row, got {value!r}"
                )
        steps.append(row["step"])
        values.append(row[key])
    return steps, values


def plot_metrics(log_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``loss.png`` (loss, eval loss and lr by step) and return its path. Rows
    without ``lr`` (preference and RL runs) plot their loss alone.

    Example:
        >>> plot_metrics("runs/a")
        PosixPath('runs/a/loss.png')
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from exc
    folder = Path(log_dir)
    path = folder / METRICS_FILE
    rows = _numbered_rows(path)
    loss = _series(path, rows, "loss")
    if not loss[0]:
        raise DataError(
            str(path), None, None, "has no training steps to plot (no row has a 'loss')"
        )
    evals = _series(path, rows, "eval_loss")
    lr = _series(path, rows, "lr")
    if lr[0]:
        fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    else:
        fig, ax_loss = plt.subplots(1, 1, figsize=(7, 3.5))
    ax_loss.plot(*loss, label="train loss / token")
    if evals[0]:
        ax_loss.plot(*evals, "o-", label="eval loss / token")
    ax_loss.set_ylabel("loss")
    # A log axis needs positive values (DPO/RL losses can be negative or zero).
    if all(v > 0 and math.isfinite(v) for v in loss[1] + evals[1]):
        ax_loss.set_yscale("log")
    ax_loss.legend()
    if lr[0]:
        ax_lr.plot(*lr, color="tab:orange")
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("step")
    else:
        ax_loss.set_xlabel("step")
    fig.tight_layout()
    target = Path(out) if out else folder / "loss.png"
    try:
        with atomic_path(target) as tmp:  # a full disk leaves no half-written PNG
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return target
