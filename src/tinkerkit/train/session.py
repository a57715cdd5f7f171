"""The bookkeeping every training loop shares, so each loop file reads like the guide.

- ``open_session``: a fresh LoRA training client, or — with ``resume`` — one restored
  (weights and Adam state) from the last complete checkpoint in ``LOG_DIR``;
- ``Session.begin``: refuse a resume whose identity changed, write ``run.json``, drop
  metric lines past the checkpoint, and say where the data cursor starts;
- ``Checkpointer``: queue state + sampler saves behind the pipeline and append the
  ``checkpoints.jsonl`` line once both have landed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from tinkerkit.train.batching import Cursor
from tinkerkit.train.checkpoints import (
    CheckpointEntry,
    CheckpointLog,
    NothingToResumeError,
    check_resume,
    load_manifest,
    write_json_atomic,
)
from tinkerkit.train.metrics import Callback, MetricsLogger, truncate_metrics
from tinkerkit.train.pipeline import Pipeline


@dataclass(kw_only=True)
class RunOptions:
    """Settings every training loop shares (keyword-only in every loop's config)."""

    model: str = "tinkerkit/tiny"
    rank: int = 32
    seed: int = 0
    log_dir: str | Path = "runs/run"
    resume: bool = False
    save_every: int = 0
    ttl_seconds: int | None = None
    progress: bool = True
    callbacks: Sequence[Callback] = field(default_factory=tuple)
    wandb_project: str | None = None


@dataclass
class RunResult:
    """Where a finished run left its weights, and what it logged."""

    state_path: str
    sampler_path: str
    log_dir: Path
    steps: int
    metrics: list[dict[str, Any]]


@dataclass
class Session:
    training: Any
    log_dir: Path
    resume_from: CheckpointEntry | None
    manifest: dict[str, Any] | None
    resume_count: int = 0

    @property
    def start(self) -> Cursor:
        r = self.resume_from
        return Cursor(r.epoch, r.batch) if r else Cursor()

    @property
    def start_step(self) -> int:
        return self.resume_from.step if self.resume_from else 0

    def begin(self, identity: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Check the identity against a resumed run, then write ``run.json``."""
        if self.manifest is not None:
            check_resume(self.manifest["identity"], identity, self.log_dir)
            self.resume_count = int(self.manifest.get("resume_count", 0)) + 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.log_dir / "run.json",
            {"identity": dict(identity), "resume_count": self.resume_count, "config": dict(config)},
        )
        if self.resume_from is not None:
            truncate_metrics(self.log_dir, self.start_step)

    def metrics(self, options: RunOptions, total_steps: int) -> MetricsLogger:
        """The run's metrics logger (``LOG_DIR/metrics.jsonl``, progress bar, callbacks)."""
        return MetricsLogger(
            self.log_dir,
            total_steps,
            start_step=self.start_step,
            progress=options.progress,
            callbacks=options.callbacks,
            wandb_project=options.wandb_project,
            config=public_config(options),
        )


def open_session(service: Any, options: RunOptions, init_state: str | None = None) -> Session:
    """A training client for this run: fresh (starting from ``init_state``, a
    ``tinker://.../weights/`` checkpoint, when given), or restored from ``log_dir``'s last
    checkpoint when ``options.resume``. ``service`` None means ``tk.connect()``."""
    if service is None:
        import tinkerkit as tk

        service = tk.connect()
    folder = Path(options.log_dir)
    if not options.resume:
        if init_state:
            training = service.create_training_client_from_state(init_state).result()
        else:
            training = service.create_lora_training_client(
                base_model=options.model, rank=options.rank, seed=options.seed
            ).result()
        return Session(training, folder, None, None)
    last = CheckpointLog(folder).last()
    manifest = load_manifest(folder)
    if last is None or manifest is None:
        raise NothingToResumeError(folder)
    training = service.create_training_client_from_state_with_optimizer(last.state_path).result()
    return Session(training, folder, last, manifest)


class Checkpointer:
    """Saves (state + sampler weights) in request order; logs each once it has landed."""

    def __init__(
        self, session: Session, pipeline: Pipeline, seed: int, ttl_seconds: int | None
    ) -> None:
        self.training = session.training
        self.pipeline = pipeline
        self.log = CheckpointLog(session.log_dir)
        # Each resume saves under its own suffix: re-saving a name never fails a resume.
        self.suffix = f"-r{session.resume_count}" if session.resume_count else ""
        self.seed = seed
        self.ttl_seconds = ttl_seconds

    def submit(self, name: str, step: int, following: Cursor) -> dict[str, str]:
        """Queue a checkpoint; the returned dict gets ``state``/``sampler`` paths once saved."""
        service_name = f"{name}{self.suffix}"
        state = self.training.save_state(service_name, ttl_seconds=self.ttl_seconds, overwrite=True)
        sampler = self.training.save_weights_for_sampler(service_name, ttl_seconds=self.ttl_seconds)
        paths: dict[str, str] = {}

        def done(results: Mapping[str, Any]) -> None:
            paths["state"] = results["state"].path
            paths["sampler"] = results["sampler"].path
            self.log.append(
                CheckpointEntry(
                    name,
                    step,
                    paths["state"],
                    paths["sampler"],
                    following.epoch,
                    following.batch,
                    self.seed,
                )
            )

        self.pipeline.submit({"state": state, "sampler": sampler}, done)
        return paths


def next_cursor(cursor: Cursor, per_epoch: int) -> Cursor:
    """The batch after ``cursor``."""
    if cursor.batch + 1 < per_epoch:
        return Cursor(cursor.epoch, cursor.batch + 1)
    return Cursor(cursor.epoch + 1, 0)


def public_config(config: Any) -> dict[str, Any]:
    """A config as JSON-safe values: no callbacks, in-memory data summarised, paths as str."""
    # Not asdict: it deep-copies every field, and callbacks or rewards may hold clients.
    if is_dataclass(config) and not isinstance(config, type):
        raw = {f.name: getattr(config, f.name) for f in fields(config)}
    else:
        raw = dict(config)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "callbacks" or callable(value):
            continue
        if (
            isinstance(value, list | tuple)
            and value
            and not isinstance(value[0], str | int | float)
        ):
            value = f"<{len(value)} records in memory>"
        out[key] = str(value) if isinstance(value, Path) else value
    return out
