"""One training run: its folder, client, requests in flight, metrics and checkpoints.

Every loop (SFT, DPO, RL) has the same frame, written once here, so each loop file is
only what is its own — how a step is submitted and how its result is finished:

    run = Run.start(config, identity)        # before any client: refuses bad folders
    if run.finished:
        return run.recorded(Result)          # a finished run's result, from its files
    datums = run.open(service, lambda tokenizer: build(tokenizer))
    with run.begin(total_steps, depth=config.pipeline_depth):
        for step in run.steps(datums, config.batch_size, config.epochs):
            run.submit(loop.submit(step), loop.finish)    # finished `depth` steps later
            if run.save_due(step):
                run.save(step)
        return run.finish(Result)            # final checkpoint; results read from disk

``Run`` owns resuming (the client restored from the last complete checkpoint, the data
cursor and step count continued), ``LOG_DIR/metrics.jsonl`` and ``samples.jsonl``
(rows logged in submission order, whatever finishes first), and checkpoints (a line in
``checkpoints.jsonl`` once both the state and the sampler weights have landed, then
``keep_last``). A result always holds the whole run's rows, read back from its files,
so a resumed run reports every step, not only this process's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tinker import types

from tinkerkit._defaults import export_adapter, rest_client
from tinkerkit._sync import raise_if_stopped
from tinkerkit.errors import ConfigError
from tinkerkit.paths import holds_something
from tinkerkit.protocols import FutureLike, ServiceClientLike, Tokenizer, TrainingClientLike
from tinkerkit.train.batching import Cursor, batches_per_epoch, iterate
from tinkerkit.train.checkpoints import (
    CheckpointEntry,
    CheckpointLog,
    check_resume,
    read_lines,
    write_json_atomic,
)
from tinkerkit.train.metrics import (
    METRICS_FILE,
    SAMPLES_FILE,
    MetricsLogger,
    truncate_metrics,
)
from tinkerkit.train.pipeline import Pipeline
from tinkerkit.train.retention import prune
from tinkerkit.train.rundir import RunDir
from tinkerkit.train.session import (
    RunOptions,
    RunResult,
    open_prepared_session,
    public_config,
    start_run,
)

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")
Sub = TypeVar("Sub")
R = TypeVar("R", bound=RunResult)
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Step(Generic[Item]):
    """One training step: its number over the whole run (resumes included) and its batch."""

    number: int
    epoch: int
    """0-based epoch of the batch."""
    batch: list[Item]
    following: Cursor
    """Where the data continues after this step (what a checkpoint saved here records)."""
    last: bool
    """The run's last step: nothing is evaluated or saved after it but the final work."""

    @property
    def ends_epoch(self) -> bool:
        return self.following.batch == 0


@dataclass(frozen=True)
class SubmittedStep(Generic[Item]):
    """A training step's requests in flight: ``finish`` reads them once they land."""

    step: Step[Item]
    forward_backward: Any
    optim_step: Any
    lr: float


@dataclass(frozen=True)
class SubmittedSave:
    """A checkpoint in flight: the state and sampler saves of one name."""

    name: str
    step: int
    following: Cursor
    state: FutureLike[types.SaveWeightsResponse]
    sampler: FutureLike[types.SaveWeightsForSamplerResponse]
    external: FutureLike[types.SaveWeightsExternalResponse] | None = None
    """The same weights saved externally (``export_final``), where asked for."""


class Run:
    """A training run from its folder's first check to its final checkpoint."""

    def __init__(self, options: RunOptions, identity: Mapping[str, Any], folder: RunDir) -> None:
        self.options = options
        self.identity = dict(identity)
        self.folder = folder
        self.log_dir = folder.path
        # Set by open(): a loop reaches them only once its run is open.
        self.training: TrainingClientLike
        self.service: ServiceClientLike
        self.tokenizer: Tokenizer
        self.step = folder.resume_from.step if folder.resume_from else 0
        """The last step submitted (the resumed checkpoint's step before the first)."""
        self._epochs = 0
        self._suffix = ""
        self._pipeline: Pipeline | None = None
        self._metrics: MetricsLogger | None = None

    @classmethod
    def start(cls, options: RunOptions, identity: Mapping[str, Any]) -> Run:
        """Check the log folder before any client exists, so a refused run leaves no
        files, in ``log_dir`` or under TINKERKIT_HOME.

        ``identity``: what defines the run as far as it is known without a tokenizer.

        Example:
            >>> run = Run.start(config, {"model": config.model, "seed": config.seed})
            >>> run.finished
            False
        """
        folder = start_run(options, identity)
        if not folder.finished:
            check_export_folder(options)
        return cls(options, identity, folder)

    @property
    def finished(self) -> bool:
        """The folder holds a run that reached ``final``: nothing is left to train."""
        return self.folder.finished

    def recorded(self, result_type: type[R]) -> R:
        """A finished run's result, read back from its files (nothing is trained or saved)."""
        return self.folder.recorded(result_type)

    @property
    def start_step(self) -> int:
        r = self.folder.resume_from
        return r.step if r else 0

    def open(
        self,
        service: ServiceClientLike | None,
        prepare: Callable[[Any], Prepared],
        init_state: str | None = None,
    ) -> Prepared:
        """The training client (fresh, from ``init_state``, or restored to resume), and
        the run's inputs from ``prepare(tokenizer)``, with the training client's tokenizer.
        ``service`` None: the face's default, ``tk.connect()``."""
        self.service, self.training, self.tokenizer, prepared = open_prepared_session(
            service, self.options, self.folder, prepare, init_state
        )
        return prepared

    @contextmanager
    def begin(
        self,
        total_steps: int,
        *,
        depth: int,
        config: Mapping[str, Any] | None = None,
        **identity: Any,
    ) -> Iterator[Run]:
        """Refuse a resume whose identity changed, write ``run.json``, open the logs.

        ``identity``: what defines the run beyond ``Run.start``'s (e.g. the tokens);
        ``config``: the JSON-safe config recorded in ``run.json`` (default: the options).
        """
        self.identity.update(identity)
        manifest = self.folder.manifest
        resume_count = 0
        if manifest is not None:
            check_resume(manifest["identity"], self.identity, self.log_dir)
            resume_count = int(manifest.get("resume_count", 0)) + 1
        # Each resume saves under its own suffix: re-saving a name never fails a resume.
        self._suffix = f"-r{resume_count}" if resume_count else ""
        self.folder.clear()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.log_dir / "run.json",
            {
                "identity": self.identity,
                "resume_count": resume_count,
                "config": dict(config if config is not None else public_config(self.options)),
            },
        )
        if self.folder.resume_from is not None:
            CheckpointLog(self.log_dir).drop_torn_tail()
            truncate_metrics(self.log_dir, self.start_step)
        self._pipeline = Pipeline(depth)
        self._metrics = MetricsLogger(
            self.log_dir,
            total_steps,
            start_step=self.start_step,
            progress=self.options.progress,
            callbacks=self.options.callbacks,
            wandb_project=self.options.wandb_project,
            config=public_config(self.options),
        )
        try:
            yield self
        finally:
            self._metrics.close()

    def steps(
        self, items: Sequence[Item], batch_size: int, epochs: int, total: int | None = None
    ) -> Iterator[Step[Item]]:
        """The run's steps from where it stands: shuffled per epoch, seeded, resumable.

        ``total`` stops early (RL's ``steps``); by default every batch of ``epochs``."""
        per_epoch = batches_per_epoch(len(items), batch_size)
        total = per_epoch * epochs if total is None else total
        self._epochs = epochs
        start = self.folder.resume_from
        cursor = Cursor(start.epoch, start.batch) if start else Cursor()
        for at, batch in iterate(items, batch_size, epochs, self.options.seed, cursor):
            if self.step >= total:
                return
            # An interrupted caller (a notebook) stops the loop here, between steps.
            raise_if_stopped()
            self.step += 1
            following = (
                Cursor(at.epoch, at.batch + 1)
                if at.batch + 1 < per_epoch
                else Cursor(at.epoch + 1, 0)
            )
            yield Step(self.step, at.epoch, batch, following, self.step == total)

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("Run.begin() first")
        return self._pipeline

    @property
    def metrics(self) -> MetricsLogger:
        if self._metrics is None:
            raise RuntimeError("Run.begin() first")
        return self._metrics

    def submit(self, submitted: Sub, finish: Callable[[Sub], Row | None]) -> None:
        """Queue a step; once it is finished, its row goes to ``metrics.jsonl``."""
        self.pipeline.submit(submitted, lambda s: self.log(finish(s)))

    def submit_event(self, submitted: Sub, finish: Callable[[Sub], Row | None]) -> None:
        """Queue an evaluation; its row (``eval_*`` figures) goes to ``metrics.jsonl``."""
        self.pipeline.submit(submitted, lambda s: self._event(finish(s)))

    def submit_samples(self, submitted: Sub, finish: Callable[[Sub], Sequence[Row]]) -> None:
        """Queue previews; their rows (text) go to ``samples.jsonl``."""
        self.pipeline.submit(submitted, lambda s: self.log_samples(finish(s)))

    def log(self, row: Row | None) -> None:
        """A step's row, now (a loop that finishes its step before the next one)."""
        if row is not None:
            self.metrics.log(row)

    def _event(self, row: Row | None) -> None:
        if row is not None:
            self.metrics.log_event(row)

    def log_samples(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.metrics.log_sample(row)

    def save_due(self, step: Step[Any]) -> bool:
        """``save_every`` falls on this step."""
        every = self.options.save_every
        return bool(every) and step.number % every == 0

    def save(self, step: Step[Any], name: str | None = None) -> None:
        """Queue a checkpoint after ``step`` (named ``step-000012`` unless ``name``)."""
        self._save(name or f"step-{step.number:06d}", step.number, step.following)

    def _save(self, name: str, step: int, following: Cursor, external: bool = False) -> None:
        service_name = f"{name}{self._suffix}"
        ttl = self.options.ttl_seconds
        submitted = SubmittedSave(
            name,
            step,
            following,
            self.training.save_state(service_name, ttl_seconds=ttl, overwrite=True),
            self.training.save_weights_for_sampler(service_name, ttl_seconds=ttl),
            self.training.save_weights_external(service_name, ttl_seconds=ttl)
            if external
            else None,
        )
        self.pipeline.submit(submitted, self._finish_save)

    def _finish_save(self, saved: SubmittedSave) -> None:
        log = CheckpointLog(self.log_dir)
        state, sampler = saved.state.result().path, saved.sampler.result().path
        external = saved.external.result().path if saved.external is not None else None
        log.append(
            CheckpointEntry(
                saved.name,
                saved.step,
                state,
                sampler,
                saved.following.epoch,
                saved.following.batch,
                external_path=external,
            )
        )
        if self.options.keep_last:
            rest = rest_client(self.service)
            prune(
                log,
                self.options.keep_last,
                lambda p: rest.delete_checkpoint_from_tinker_path(p).result(),
            )

    def drain(self) -> None:
        """Finish everything in flight (rows logged, checkpoint lines written)."""
        self.pipeline.drain()

    def finish(self, result_type: type[R]) -> R:
        """Save ``final``, finish everything in flight, and read the run's result from disk;
        with ``export_final``, also save ``final`` externally and write it there as a PEFT
        adapter (the face's ``tk.export.export``)."""
        export_to = self.options.export_final
        self._save("final", self.step, Cursor(self._epochs, 0), external=export_to is not None)
        self.drain()
        final = CheckpointLog(self.log_dir).last()
        assert final is not None and final.name == "final"
        if export_to is not None and final.external_path is not None:
            export_adapter(final.external_path, Path(export_to), self.service)
        return result_type(
            final.state_path,
            final.sampler_path,
            self.log_dir,
            final.step,
            read_lines(self.log_dir / METRICS_FILE),
            samples=read_lines(self.log_dir / SAMPLES_FILE),
            external_path=final.external_path,
        )


def check_export_folder(options: RunOptions) -> None:
    """Refuse an ``export_final`` folder that is a file or holds files before anything
    is trained: the export at the end would fail after the whole run."""
    folder = options.export_final
    if folder is None:
        return
    if holds_something(Path(folder)):
        raise ConfigError(
            f"{type(options).__name__}.export_final ({str(folder)!r}) must be a new or empty "
            "folder: it holds files already; pass another folder"
        )


def every(interval: int, step: Step[Any]) -> bool:
    """``interval`` (0 = never) falls on ``step``: ``if every(config.eval_every, step):``."""
    return bool(interval) and step.number % interval == 0
