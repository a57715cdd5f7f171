"""Loss and learning-rate curves from ``metrics.jsonl`` (matplotlib, optional)."""

from __future__ import annotations

import os
from pathlib import Path

from tinkerkit.errors import TinkerkitError
from tinkerkit.train.checkpoints import read_lines
from tinkerkit.train.metrics import METRICS_FILE


def plot_metrics(log_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``loss.png`` (loss, eval loss and lr by step) and return its path.

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
    rows = read_lines(folder / METRICS_FILE)
    steps = [r for r in rows if "loss" in r]
    if not steps:
        raise TinkerkitError(f"{folder / METRICS_FILE} has no training steps to plot")
    evals = [r for r in rows if "eval_loss" in r]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_loss.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss / token")
    if evals:
        ax_loss.plot(
            [r["step"] for r in evals],
            [r["eval_loss"] for r in evals],
            "o-",
            label="eval loss / token",
        )
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_lr.plot([r["step"] for r in steps], [r["lr"] for r in steps], color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    fig.tight_layout()
    target = Path(out) if out else folder / "loss.png"
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, target)
    return target
