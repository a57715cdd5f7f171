"""The offline checkpoint store: ``tinker://`` paths on disk under ``TINKERKIT_HOME``.

    $TINKERKIT_HOME/runs/<run_id>/run.json
    $TINKERKIT_HOME/runs/<run_id>/weights/<name>/          adapter + optimizer (safetensors)
    $TINKERKIT_HOME/runs/<run_id>/sampler_weights/<name>/  archive.tar (Tinker archive layout)
    $TINKERKIT_HOME/runs/<run_id>/external_weights/<name>/ adapter_model.safetensors + config
    $TINKERKIT_HOME/runs/.sessions/<session_id>.json       session records (sessions.py)

Every checkpoint folder holds ``checkpoint.json`` (its record: kind, base model, LoRA
config, expiry, ``public`` flag, ...). A checkpoint past its ``expires_at`` is gone for
every call, as on the service: loads refuse it, listings leave it out; its files stay
until ``purge_expired()``.

Only safetensors and JSON are written or read (nothing is unpickled). A checkpoint is
assembled in a temporary folder and renamed into place, so a crash never leaves half
of one, and the rename is also what refuses a second checkpoint with the same name
(even from another process).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.numpy import save as st_save
from tinker import types

from tinkerkit.atomic import discard_folder, staged_folder, write_json_atomic
from tinkerkit.backends.archive import (
    ADAPTER_CONFIG,
    ADAPTER_FILE,
    adapter_archive,
    load_weights,
    read_archive_weights,
)
from tinkerkit.backends.engine import LoraConfig
from tinkerkit.backends.sessions import SessionStore
from tinkerkit.errors import (
    CheckpointExistsError,
    CheckpointExpiredError,
    CheckpointNotFoundError,
    InvalidTinkerPathError,
    RequestError,
    RestRequestError,
)
from tinkerkit.paths import tinkerkit_home

Kind = Literal["weights", "sampler_weights", "external_weights"]
KIND_TO_TYPE: dict[str, types.CheckpointType] = {
    "weights": "training",
    "sampler_weights": "sampler",
    "external_weights": "external",
}
OPTIMIZER_FILE = "optimizer.safetensors"
ARCHIVE_FILE = "archive.tar"
META_FILE = "checkpoint.json"


@dataclass
class RunRecord:
    run_id: str
    backend: str
    base_model: str
    lora: dict[str, Any]
    created: str
    user_metadata: dict[str, str] | None = None
    session_id: str | None = None


@dataclass
class CheckpointRecord:
    path: str
    run_id: str
    kind: str
    name: str
    created: str
    base_model: str
    lora: dict[str, Any]
    backend: str
    expires_at: str | None = None
    user_metadata: dict[str, str] | None = None
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedCheckpoint:
    record: CheckpointRecord
    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] | None


TTL_MIN_S = 3600
TTL_MAX_S = 10 * 365 * 24 * 3600


def check_ttl(ttl_seconds: int | None) -> None:
    """The service's TTL bounds: None (never expires) or 1 hour to 10 years."""
    if ttl_seconds is None:
        return
    if not isinstance(ttl_seconds, int) or not TTL_MIN_S <= ttl_seconds <= TTL_MAX_S:
        raise RequestError(
            f"ttl_seconds must be between {TTL_MIN_S} (1 hour) and {TTL_MAX_S} (10 years), "
            f"or None to keep the checkpoint indefinitely; got {ttl_seconds!r}."
        )


def parse_tinker_path(
    path: str, kinds: tuple[str, ...] = tuple(KIND_TO_TYPE)
) -> tuple[str, str, str]:
    """``tinker://run/kind/name`` → (run, kind, name); a clear error for anything else."""
    if not isinstance(path, str) or not path.startswith("tinker://"):
        raise InvalidTinkerPathError(str(path), " or ".join(kinds))
    parts = path[len("tinker://") :].split("/")
    if len(parts) != 3 or parts[1] not in kinds or not parts[0] or not parts[2]:
        raise InvalidTinkerPathError(path, " or ".join(kinds))
    run, kind, name = parts
    for part in (run, name):
        if part in (".", "..") or "\\" in part or part.startswith("."):
            raise InvalidTinkerPathError(path, " or ".join(kinds))
    return run, kind, name


def _now() -> datetime:
    return datetime.now(UTC)


def is_expired(record: CheckpointRecord) -> bool:
    """Past its ``expires_at``: gone, as an expired checkpoint is on the service."""
    return record.expires_at is not None and datetime.fromisoformat(record.expires_at) < _now()


def _is_run_id(run_id: str) -> bool:
    return (
        isinstance(run_id, str)
        and bool(run_id)
        and not any(c in run_id for c in "/\\")
        and not run_id.startswith(".")
    )


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def _write_json(path: Path, obj: Any) -> None:
    path.write_bytes(_json_bytes(obj))


class CheckpointStore:
    """Runs and checkpoints on disk. Safe to use from several processes at once."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self.sessions = SessionStore(lambda: self.root / ".sessions")
        """The session records kept with these runs."""

    @property
    def root(self) -> Path:
        # Resolved on use, so TINKERKIT_HOME set after import (e.g. by tests) counts.
        return self._root or tinkerkit_home() / "runs"

    def _run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    # --- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        backend: str,
        base_model: str,
        lora: LoraConfig,
        user_metadata: dict[str, str] | None,
        *,
        session_id: str | None = None,
    ) -> RunRecord:
        record = RunRecord(
            run_id=f"{backend}-{uuid.uuid4().hex[:16]}",
            backend=backend,
            base_model=base_model,
            lora=asdict(lora),
            created=_now().isoformat(),
            user_metadata=user_metadata,
            session_id=session_id,
        )
        run_dir = self._run_dir(record.run_id)
        run_dir.mkdir(parents=True, exist_ok=False)
        write_json_atomic(run_dir / "run.json", asdict(record))
        if session_id is not None:
            self.sessions.ensure(session_id, backend)
        return record

    def get_run(self, run_id: str) -> RunRecord:
        path = self._run_dir(run_id) / "run.json"
        if not _is_run_id(run_id) or not path.is_file():
            raise CheckpointNotFoundError(f"tinker://{run_id}", str(self.root))
        return RunRecord(**json.loads(path.read_text()))

    def list_runs(self) -> list[RunRecord]:
        if not self.root.is_dir():
            return []
        runs = []
        for child in sorted(self.root.iterdir()):
            if (child / "run.json").is_file():
                runs.append(RunRecord(**json.loads((child / "run.json").read_text())))
        runs.sort(key=lambda r: r.created, reverse=True)
        return runs

    # --- checkpoints -------------------------------------------------------------------

    def save(
        self,
        run: RunRecord,
        kind: Kind,
        name: str,
        weights: dict[str, np.ndarray],
        adapter_config: dict[str, Any],
        *,
        optimizer: dict[str, np.ndarray] | None = None,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
        seal: Callable[[str, bytes], tuple[str, bytes]] | None = None,
    ) -> CheckpointRecord:
        """Write one checkpoint atomically; ``CheckpointExistsError`` if the name is taken.

        ``seal`` (name, bytes) → (stored name, stored bytes) is applied to every file in
        memory before it is written (``backends.age.sealer``: ``<file>.age``, encrypted),
        so nothing unsealed reaches the disk; the record itself stays readable.
        """
        path = f"tinker://{run.run_id}/{kind}/{name}"
        parse_tinker_path(path)
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive or None, got {ttl_seconds}")
        final = self._run_dir(run.run_id) / kind / name
        if final.exists() and not overwrite:
            raise CheckpointExistsError(path)

        def publish(staged: Path, final: Path) -> None:
            self._publish(staged, final, path, overwrite)

        with staged_folder(final, prefix=f".tmp-{name}-", publish=publish) as tmp:

            def write(file: str, data: bytes) -> None:
                if seal is not None:
                    file, data = seal(file, data)
                try:
                    (tmp / file).write_bytes(data)
                except OSError as exc:  # a full disk names no file: say which checkpoint
                    if exc.filename is not None:
                        raise
                    raise type(exc)(exc.errno, exc.strerror or str(exc), str(final)) from None

            if kind == "sampler_weights":
                write(ARCHIVE_FILE, adapter_archive(weights, adapter_config))
            else:
                write(ADAPTER_FILE, st_save(weights))
                write(ADAPTER_CONFIG, _json_bytes(adapter_config))
            if optimizer is not None:
                write(OPTIMIZER_FILE, st_save(optimizer))
            created = _now()
            record = CheckpointRecord(
                path=path,
                run_id=run.run_id,
                kind=kind,
                name=name,
                created=created.isoformat(),
                base_model=run.base_model,
                lora=run.lora,
                backend=run.backend,
                expires_at=(created + timedelta(seconds=ttl_seconds)).isoformat()
                if ttl_seconds
                else None,
                user_metadata=user_metadata,
                size_bytes=sum(f.stat().st_size for f in tmp.iterdir()),
                extra={"has_optimizer": optimizer is not None}
                | ({"age_encrypted": True} if seal is not None else {}),
            )
            _write_json(tmp / META_FILE, asdict(record))
        return record

    @staticmethod
    def _publish(tmp: Path, final: Path, path: str, overwrite: bool) -> None:
        if overwrite and final.exists():
            discard_folder(final)
        try:
            os.rename(tmp, final)  # fails if another writer got there first
        except OSError:
            raise CheckpointExistsError(path) from None

    def record(self, path: str, *, include_expired: bool = False) -> CheckpointRecord:
        """A checkpoint's record; ``CheckpointExpiredError`` past its TTL unless asked."""
        run, kind, name = parse_tinker_path(path)
        meta = self._run_dir(run) / kind / name / META_FILE
        if not meta.is_file():
            raise CheckpointNotFoundError(path, str(self.root))
        record = CheckpointRecord(**json.loads(meta.read_text()))
        if not include_expired and record.expires_at is not None and is_expired(record):
            raise CheckpointExpiredError(path, record.expires_at)
        return record

    def update(self, path: str, /, **changes: Any) -> CheckpointRecord:
        """Change fields of a live checkpoint's record (``expires_at``, ``extra``, ...)."""
        record = self.record(path)
        for name, value in changes.items():
            if not hasattr(record, name) or name in ("path", "run_id", "kind", "name"):
                raise AttributeError(f"checkpoint records have no settable field {name!r}")
            setattr(record, name, value)
        write_json_atomic(self.directory(path) / META_FILE, asdict(record))
        return record

    def copy(
        self, path: str, run: RunRecord, *, ttl_seconds: int | None = None
    ) -> CheckpointRecord:
        """A copy of the checkpoint at ``path`` (same kind and name) in ``run``.

        The files are hard links where the file system allows (no bytes duplicated, as
        on the service, whose copies share storage), else copies. The copy's expiry is
        its own ``ttl_seconds``, not the source's; it starts private.
        """
        source = self.record(path)
        folder = self.directory(path)
        target = f"tinker://{run.run_id}/{source.kind}/{source.name}"
        final = self._run_dir(run.run_id) / source.kind / source.name

        def publish(staged: Path, final: Path) -> None:
            self._publish(staged, final, target, overwrite=False)

        with staged_folder(final, prefix=f".tmp-{source.name}-", publish=publish) as tmp:
            for file in folder.iterdir():
                if file.is_file() and file.name != META_FILE:
                    try:
                        os.link(file, tmp / file.name)
                    except OSError:
                        shutil.copy2(file, tmp / file.name)
            created = _now()
            record = CheckpointRecord(
                path=target,
                run_id=run.run_id,
                kind=source.kind,
                name=source.name,
                created=created.isoformat(),
                base_model=source.base_model,
                lora=source.lora,
                backend=source.backend,
                expires_at=(created + timedelta(seconds=ttl_seconds)).isoformat()
                if ttl_seconds
                else None,
                user_metadata=source.user_metadata,
                size_bytes=source.size_bytes,
                extra={**source.extra, "public": False, "copied_from": path},
            )
            _write_json(tmp / META_FILE, asdict(record))
        return record

    def directory(self, path: str) -> Path:
        run, kind, name = parse_tinker_path(path)
        self.record(path)
        return self._run_dir(run) / kind / name

    def load(
        self, path: str, *, with_optimizer: bool = False, backend: str | None = None
    ) -> LoadedCheckpoint:
        """Read a checkpoint's weights (and optimizer state, if asked and present).

        ``backend`` is the loading backend's name: a checkpoint another backend made
        (its weights belong to another model) is refused, naming the one to use.
        """
        record = self.record(path)
        made_by = self.get_run(record.run_id).backend
        if backend is not None and made_by != backend:
            raise RestRequestError(
                f"{path} was made by the {made_by} backend; the {backend} backend cannot "
                f"load it (its weights are another model's). Use --backend {made_by} "
                f"(tk.connect({made_by!r}))."
            )
        folder = self.directory(path)
        if record.kind == "sampler_weights":
            weights = read_archive_weights(folder / ARCHIVE_FILE)
        else:
            weights = load_weights((folder / ADAPTER_FILE).read_bytes(), str(folder / ADAPTER_FILE))
        optimizer = None
        if with_optimizer:
            opt_file = folder / OPTIMIZER_FILE
            if not opt_file.is_file():
                raise CheckpointNotFoundError(
                    f"{path} (optimizer state; it was saved without one)", str(folder)
                )
            optimizer = load_weights(opt_file.read_bytes(), str(opt_file))
        return LoadedCheckpoint(record, weights, optimizer)

    def list_checkpoints(
        self, run_id: str, *, include_expired: bool = False
    ) -> list[CheckpointRecord]:
        """A run's checkpoints, oldest first; expired ones only if asked."""
        self.get_run(run_id)
        records = []
        for kind in KIND_TO_TYPE:
            folder = self._run_dir(run_id) / kind
            if not folder.is_dir():
                continue
            for child in sorted(folder.iterdir()):
                if (child / META_FILE).is_file() and not child.name.startswith("."):
                    record = CheckpointRecord(**json.loads((child / META_FILE).read_text()))
                    if include_expired or not is_expired(record):
                        records.append(record)
        records.sort(key=lambda r: r.created)
        return records

    def purge_expired(self) -> list[str]:
        """Delete the files of every expired checkpoint; the paths deleted."""
        purged = []
        for run in self.list_runs():
            for record in self.list_checkpoints(run.run_id, include_expired=True):
                if is_expired(record):
                    folder = self._run_dir(run.run_id) / record.kind / record.name
                    discard_folder(folder)
                    purged.append(record.path)
        return purged

    def delete(self, path: str) -> None:
        discard_folder(self.directory(path))

    def files(self, path: str) -> dict[str, Path]:
        """The files of a checkpoint, by name relative to its root (metadata excluded)."""
        folder = self.directory(path)
        return {f.name: f for f in sorted(folder.iterdir()) if f.is_file() and f.name != META_FILE}


def to_checkpoint(record: CheckpointRecord) -> types.Checkpoint:
    return types.Checkpoint(
        checkpoint_id=f"{record.kind}/{record.name}",
        checkpoint_type=KIND_TO_TYPE[record.kind],
        time=datetime.fromisoformat(record.created),
        tinker_path=record.path,
        size_bytes=record.size_bytes,
        public=bool(record.extra.get("public", False)),
        user_metadata=record.user_metadata,
        expires_at=datetime.fromisoformat(record.expires_at) if record.expires_at else None,
    )
