"""Metrics of a training loop: ``LOG_DIR/metrics.jsonl``, a progress bar, callbacks.

One JSON object per step. On resume the lines after the resumed checkpoint are
dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tinkerkit.train.checkpoints import append_line, read_lines

METRICS_FILE = "metrics.jsonl"
Callback = Callable[[Mapping[str, Any]], None]


def truncate_metrics(log_dir: Path, last_step: int) -> None:
    """Keep only the metric lines of steps <= ``last_step`` (atomic rewrite)."""
    path = log_dir / METRICS_FILE
    kept = [row for row in read_lines(path) if row.get("step", 0) <= last_step]
    tmp = path.with_name(f".{METRICS_FILE}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    os.replace(tmp, path)


class MetricsLogger:
    """Writes metric rows, updates a tqdm bar, and calls user callbacks."""

    def __init__(
        self,
        log_dir: Path,
        total_steps: int,
        *,
        start_step: int = 0,
        progress: bool = True,
        callbacks: Iterable[Callback] = (),
        wandb_project: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = log_dir / METRICS_FILE
        self.callbacks = list(callbacks)
        self.rows: list[dict[str, Any]] = []
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", desc="training")
        self._wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError as exc:
                raise ImportError("Weights & Biases logging needs: pip install wandb") from exc
            self._wandb = wandb.init(project=wandb_project, config=dict(config or {}))

    def log(self, row: Mapping[str, Any]) -> None:
        data = dict(row)
        append_line(self.path, data)
        self.rows.append(data)
        if self._bar is not None and "loss" in data:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{data['loss']:.4f}")
        if self._wandb is not None:
            self._wandb.log(data, step=data.get("step"))
        for callback in self.callbacks:
            callback(data)

    def log_event(self, row: Mapping[str, Any]) -> None:
        """A non-step row (eval, samples): written and passed to callbacks, no bar tick."""
        data = dict(row)
        append_line(self.path, data)
        self.rows.append(data)
        for callback in self.callbacks:
            callback(data)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()
