"""A run's log folder, read before anything is created: start, resume, refuse or overwrite.

``inspect_run`` runs first in every loop, before a client exists, so a refusal leaves
no trace anywhere:

- a folder that already holds a run (``run.json``, ``checkpoints.jsonl``,
  ``metrics.jsonl``, ``samples.jsonl``) is refused unless ``resume`` (continue it) or
  ``overwrite`` (its files are removed when the new run begins, after every input has
  been validated: a refused run never costs the old one);
- with ``resume``: the checkpoint log and ``run.json`` must be readable
  (``RunLogError`` names the file and line), and what defines the run must match
  (``ConfigMismatchError`` names the field); a run that already reached ``final`` is
  ``finished`` — its recorded result is returned and nothing is trained or saved.

    run = inspect_run(config.log_dir, resume=config.resume, overwrite=config.overwrite,
                      identity={"model": config.model, "seed": config.seed})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tinkerkit.errors import NothingToResumeError, RunExistsError, TinkerkitError
from tinkerkit.train.checkpoints import (
    CHECKPOINTS_FILE,
    MANIFEST_FILE,
    CheckpointEntry,
    CheckpointLog,
    check_resume,
    load_manifest,
    read_lines,
)
from tinkerkit.train.metrics import METRICS_FILE, SAMPLES_FILE

RUN_FILES = (MANIFEST_FILE, CHECKPOINTS_FILE, METRICS_FILE, SAMPLES_FILE)
DERIVED_FILES = ("loss.png",)
"""Made from a run's files (``tinkerkit plot``): removed with them by ``overwrite``."""

R = TypeVar("R")


@dataclass
class RunDir:
    """What a loop found in its log folder."""

    path: Path
    resume_from: CheckpointEntry | None = None
    manifest: dict[str, Any] | None = None
    overwrite: bool = False

    @property
    def finished(self) -> bool:
        """The run reached its ``final`` checkpoint: there is nothing left to train."""
        return self.resume_from is not None and self.resume_from.name == "final"

    def recorded(self, result_type: type[R]) -> R:
        """A finished run's result, read back from its files (nothing is trained or saved)."""
        last = self.resume_from
        if last is None or not self.finished:
            raise TinkerkitError(f"{self.path} holds no finished run")
        return result_type(  # type: ignore[call-arg]
            last.state_path,
            last.sampler_path,
            self.path,
            last.step,
            read_lines(self.path / METRICS_FILE),
            samples=read_lines(self.path / SAMPLES_FILE),
            already_finished=True,
            external_path=last.external_path,
        )

    def clear(self) -> None:
        """Remove the previous run's files (``overwrite``); other files stay."""
        if not self.overwrite:
            return
        for name in (*RUN_FILES, *DERIVED_FILES):
            (self.path / name).unlink(missing_ok=True)


def _run_files(folder: Path) -> list[str]:
    return [name for name in RUN_FILES if (folder / name).exists()]


def inspect_run(
    log_dir: str | Path, *, resume: bool, overwrite: bool, identity: Mapping[str, Any]
) -> RunDir:
    """Read ``log_dir`` and decide how the run starts; refuse what would lose or mix runs.

    ``identity`` holds what defines the run as far as it is known before a client
    exists; a resumed run must match it.

    Example:
        >>> inspect_run("runs/new", resume=False, overwrite=False, identity={}).resume_from
    """
    folder = Path(log_dir)
    if folder.exists() and not folder.is_dir():
        raise TinkerkitError(
            f"log dir {folder} is a file, not a folder; choose a folder for --log-dir (log_dir=)"
        )
    if resume and overwrite:
        raise TinkerkitError(
            "resume and overwrite contradict each other: --resume continues the run in "
            f"{folder}, --overwrite starts it again; pass one of them"
        )
    found = _run_files(folder) if folder.is_dir() else []
    if not resume:
        if found and not overwrite:
            raise RunExistsError(str(folder), found, _advice(folder))
        return RunDir(folder, overwrite=overwrite)
    last = CheckpointLog(folder).last()
    manifest = load_manifest(folder)
    if last is None or manifest is None:
        raise NothingToResumeError(folder, started=bool(found))
    check_resume(manifest["identity"], identity, folder)
    return RunDir(folder, last, manifest)


def _advice(folder: Path) -> str:
    try:
        last = CheckpointLog(folder).last()
    except TinkerkitError:
        last = None
    new_dir = "or choose a new --log-dir (log_dir=)"
    overwrite = "--overwrite (overwrite=True) to replace it"
    if last is None:
        return f"it has no checkpoint to resume from: pass {overwrite}, {new_dir}"
    if last.name == "final":
        return (
            f"it finished at step {last.step}: pass --resume (resume=True) to get its "
            f"result, {overwrite}, {new_dir}"
        )
    return (
        f"its last checkpoint is {last.name!r} (step {last.step}): pass --resume "
        f"(resume=True) to continue it, {overwrite}, {new_dir}"
    )
