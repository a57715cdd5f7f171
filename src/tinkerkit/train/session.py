"""The bookkeeping every training loop shares, so each loop file reads like the guide.

- ``start_run``: before any client exists, check the shared options and the log folder
  (``rundir.inspect_run``: refuse an existing run without ``resume``/``overwrite``, read
  a resumed run's records, spot a finished one);
- ``open_session``: a fresh LoRA training client, or — with ``resume`` — one restored
  (weights and Adam state) from the last complete checkpoint in ``LOG_DIR``;
- ``Session.begin``: refuse a resume whose identity changed, replace an overwritten
  run's files, write ``run.json``, drop metric lines past the checkpoint, and say where
  the data cursor starts;
- ``Checkpointer``: queue state + sampler saves behind the pipeline, append the
  ``checkpoints.jsonl`` line once both have landed, then apply ``keep_last``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from tinkerkit.backends.service_client import base_model_tokenizer
from tinkerkit.errors import ConfigError
from tinkerkit.train.batching import Cursor
from tinkerkit.train.checkpoints import (
    CheckpointEntry,
    CheckpointLog,
    check_resume,
    write_json_atomic,
)
from tinkerkit.train.metrics import MetricsLogger, truncate_metrics
from tinkerkit.train.pipeline import Pipeline
from tinkerkit.train.retention import prune
from tinkerkit.train.run_options import RunOptions as RunOptions
from tinkerkit.train.rundir import RunDir, inspect_run


@dataclass
class RunResult:
    """Where a finished run left its weights, and what it logged."""

    state_path: str
    sampler_path: str
    log_dir: Path
    steps: int
    metrics: list[dict[str, Any]]
    """``metrics.jsonl``'s rows: one per step, plus evaluation rows."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    """``samples.jsonl``'s rows: sample previews and RL transcripts."""
    already_finished: bool = False
    """``resume`` found the run finished: this is its recorded result, nothing was trained."""


def start_run(options: RunOptions, identity: Mapping[str, Any]) -> RunDir:
    """Check the shared options and the log folder; call before any client is created.

    ``identity``: what defines the run as far as it is known without a tokenizer.

    Example:
        >>> run = start_run(config, {"model": config.model, "seed": config.seed})
        >>> run.finished
        False
    """
    for name in ("save_every", "keep_last"):
        value = getattr(options, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"Config.{name} must be an integer >= 0, got {value!r}")
    return inspect_run(
        options.log_dir, resume=options.resume, overwrite=options.overwrite, identity=identity
    )


@dataclass
class Session:
    training: Any
    run: RunDir
    service: Any = None
    keep_last: int = 0
    resume_count: int = 0

    @property
    def log_dir(self) -> Path:
        return self.run.path

    @property
    def resume_from(self) -> CheckpointEntry | None:
        return self.run.resume_from

    @property
    def manifest(self) -> dict[str, Any] | None:
        return self.run.manifest

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
        self.run.clear()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.log_dir / "run.json",
            {"identity": dict(identity), "resume_count": self.resume_count, "config": dict(config)},
        )
        if self.resume_from is not None:
            CheckpointLog(self.log_dir).drop_torn_tail()
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

    def prune_checkpoints(self) -> None:
        """Apply ``keep_last`` to the checkpoint log (after a new line was committed)."""
        if self.keep_last:
            from tinkerkit.connect import rest_client

            rest = rest_client(self.service)
            prune(
                CheckpointLog(self.log_dir),
                self.keep_last,
                lambda path: rest.delete_checkpoint_from_tinker_path(path).result(),
            )


def connected(service: Any) -> Any:
    """``service``, or ``tk.connect()`` (the environment's backend) when it is None."""
    if service is None:
        from tinkerkit.connect import connect

        service = connect()
    return service


Prepared = TypeVar("Prepared")


def open_prepared_session(
    service: Any,
    options: RunOptions,
    run: RunDir,
    prepare: Callable[[Any], Prepared],
    init_state: str | None = None,
) -> tuple[Session, Any, Prepared]:
    """``open_session`` with the run's inputs prepared by ``prepare(tokenizer)`` (datums
    built and checked): before the client exists where the backend is offline and knows
    the base model's tokenizer, so input the tokenizer refuses leaves no run record; else
    with the training client's tokenizer. Returns (session, tokenizer, prepared)."""
    service = connected(service)
    tokenizer = None if init_state else base_model_tokenizer(service, options.model)
    if tokenizer is not None:
        prepared = prepare(tokenizer)
        return open_session(service, options, run, init_state), tokenizer, prepared
    session = open_session(service, options, run, init_state)
    tokenizer = session.training.get_tokenizer()
    return session, tokenizer, prepare(tokenizer)


def open_session(
    service: Any, options: RunOptions, run: RunDir, init_state: str | None = None
) -> Session:
    """A training client for this run: fresh (starting from ``init_state``, a
    ``tinker://.../weights/`` checkpoint, when given), or restored from the run's last
    checkpoint when ``run`` resumes. ``service`` None means ``tk.connect()``."""
    service = connected(service)
    if run.resume_from is not None:
        training = service.create_training_client_from_state_with_optimizer(
            run.resume_from.state_path
        ).result()
    elif init_state:
        training = service.create_training_client_from_state(init_state).result()
    else:
        training = service.create_lora_training_client(
            base_model=options.model, rank=options.rank, seed=options.seed
        ).result()
    return Session(training, run, service, options.keep_last)


class Checkpointer:
    """Saves (state + sampler weights) in request order; logs each once it has landed."""

    def __init__(self, session: Session, pipeline: Pipeline, ttl_seconds: int | None) -> None:
        self.session = session
        self.training = session.training
        self.pipeline = pipeline
        self.log = CheckpointLog(session.log_dir)
        # Each resume saves under its own suffix: re-saving a name never fails a resume.
        self.suffix = f"-r{session.resume_count}" if session.resume_count else ""
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
                )
            )
            self.session.prune_checkpoints()

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
