"""Metrics of a training loop: ``LOG_DIR/metrics.jsonl``, a progress bar, callbacks.

One kind of row per file, so a table reader (``pandas.read_json(lines=True)``) gets
columns, not a mix: ``metrics.jsonl`` holds numbers by step (one row per training step,
plus evaluation rows with ``eval_*`` figures); ``samples.jsonl`` holds text (sample
previews and RL transcripts: ``step``, ``prompt``, ``completion``...). On resume the
lines after the resumed checkpoint are dropped from both, so they read as one
uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tinkerkit.train.checkpoints import append_line, read_lines, write_text_atomic
from tinkerkit.train.progress import ProgressBar, progress_bar

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
Callback = Callable[[Mapping[str, Any]], None]


def truncate_metrics(log_dir: Path, last_step: int) -> None:
    """Keep only the metric and sample lines of steps <= ``last_step`` (atomic rewrites)."""
    for name in (METRICS_FILE, SAMPLES_FILE):
        path = log_dir / name
        if not path.is_file():
            continue
        kept = [row for row in read_lines(path) if row.get("step", 0) <= last_step]
        write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


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
        self.samples_path = log_dir / SAMPLES_FILE
        self.callbacks = list(callbacks)
        # A resumed run's rows so far (already cut back to its checkpoint): results hold
        # the whole run, as an uninterrupted one's do.
        self.rows: list[dict[str, Any]] = read_lines(self.path)
        self.samples: list[dict[str, Any]] = read_lines(self.samples_path)
        self._bar: ProgressBar | None = None
        if progress:
            # A widget in a notebook, a bar in a terminal, plain lines in a file or pipe.
            self._bar = progress_bar(total_steps, initial=start_step, unit="step", desc="training")
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
        """An evaluation row (``eval_*`` numbers): written and passed to callbacks, no tick."""
        data = dict(row)
        append_line(self.path, data)
        self.rows.append(data)
        for callback in self.callbacks:
            callback(data)

    def log_sample(self, row: Mapping[str, Any]) -> None:
        """A text row (a preview, a transcript) to ``samples.jsonl``; passed to callbacks."""
        data = dict(row)
        append_line(self.samples_path, data)
        self.samples.append(data)
        for callback in self.callbacks:
            callback(data)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()
