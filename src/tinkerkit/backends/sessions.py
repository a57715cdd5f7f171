"""Offline sessions on disk: what the service's session list shows, kept next to the runs.

    $TINKERKIT_HOME/runs/.sessions/<session_id>.json

A session is recorded when it is first used — its first training run or sampler, or
``tinkerkit serve``'s ``create_session`` — as the SDK creates its session on first use,
so a ``RestClient`` (which has no session) or a ``tk.connect`` that did nothing leaves
no record. The record holds the id, creation time, ``user_metadata``, ``project_id``,
``display_name``, the client's finish reason, the samplers, and the process that owns
it (to tell a running session from an abandoned one). Training runs point at their
session themselves (``RunRecord.session_id``).

Each write replaces the whole file atomically (temp file + rename), so a reader never
sees half a record.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit.atomic import write_json_atomic

# One lock for every SessionStore of the process: several stores (one per context) can
# write the same session file, e.g. the server's and a RestClient's.
_LOCK = threading.RLock()
DEFAULT_PROJECT = "default"
"""The project of a session created without one (the service puts those in the user's
default project; offline that project is called ``default``)."""


def new_session_id() -> str:
    return f"session-{uuid.uuid4().hex[:16]}"


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers): still a stable identity
        return "user"


def local_user_urn() -> str:
    """The offline identity: ``tinkerkit:local:<os user>`` (never a key or token)."""
    return f"tinkerkit:local:{local_user()}"


@dataclass
class SessionRecord:
    session_id: str
    backend: str
    created: str
    user_metadata: dict[str, str] | None = None
    project_id: str | None = None
    display_name: str | None = None
    finish: dict[str, Any] | None = None
    """``{"reason": "success"|"errored"|"interrupted", "detail": ..., "at": iso}``."""
    samplers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """sampler id → ``{"base_model", "model_path", "created"}``."""
    pid: int | None = None
    host: str | None = None

    @property
    def project(self) -> str:
        return self.project_id or DEFAULT_PROJECT

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created)

    def status(self) -> types.SessionStatus | None:
        """Finished (the client's reason), active (its process is alive), else unknown."""
        if self.finish is not None:
            reason = {
                "success": types.ClientSessionFinishSuccess,
                "errored": types.ClientSessionFinishErrored,
                "interrupted": types.ClientSessionFinishInterrupted,
            }[self.finish["reason"]]()
            return types.ClientSessionFinished(reason=reason, detail=self.finish.get("detail"))
        if self.pid is not None and self.host == socket.gethostname() and _alive(self.pid):
            return types.SessionActive()
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat()


_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def valid_session_id(session_id: object) -> bool:
    """Whether ``session_id`` can name a session record: letters, digits and ``._:-``,
    at most 128 characters (no path separators, NUL bytes or names too long for a file)."""
    return isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id) is not None


class SessionStore:
    """Session records under one folder (resolved on every use, like the runs' root)."""

    def __init__(self, folder: Callable[[], Path]) -> None:
        self._folder = folder

    @property
    def folder(self) -> Path:
        return self._folder()

    def path(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.json"

    # --- writing -----------------------------------------------------------------------

    def ensure(self, session_id: str, backend: str, **fields: Any) -> SessionRecord | None:
        """The record of ``session_id``, created now (owned by this process) if missing;
        None for an id that cannot name one."""
        if not valid_session_id(session_id):
            return None
        with _LOCK:
            existing = self.get(session_id)
            if existing is not None:
                return existing
            values: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
            values.update(fields)
            record = SessionRecord(session_id=session_id, backend=backend, created=_now(), **values)
            self._write(record)
            return record

    def update(self, session_id: str, change: Callable[[SessionRecord], None]) -> SessionRecord:
        """Apply ``change`` to the stored record and write it back (KeyError if none)."""
        with _LOCK:
            record = self.get(session_id)
            if record is None:
                raise KeyError(session_id)
            change(record)
            self._write(record)
            return record

    def finish(self, session_id: str, status: str, detail: str | None) -> None:
        """Record the client's finish reason (first one wins); unrecorded sessions stay so."""

        def set_reason(record: SessionRecord) -> None:
            if record.finish is None:
                record.finish = {"reason": status, "detail": detail, "at": _now()}

        if self.get(session_id) is not None:
            self.update(session_id, set_reason)

    def add_sampler(
        self,
        session_id: str,
        backend: str,
        sampler_id: str,
        base_model: str,
        model_path: str | None,
    ) -> None:
        if self.ensure(session_id, backend) is None:
            return

        def add(record: SessionRecord) -> None:
            record.samplers[sampler_id] = {
                "base_model": base_model,
                "model_path": model_path,
                "created": _now(),
            }

        self.update(session_id, add)

    def _write(self, record: SessionRecord) -> None:
        write_json_atomic(self.path(record.session_id), asdict(record))

    # --- reading -----------------------------------------------------------------------

    def get(self, session_id: str) -> SessionRecord | None:
        if not valid_session_id(session_id):
            return None
        try:
            text = self.path(session_id).read_text()
        except FileNotFoundError:
            return None
        return SessionRecord(**json.loads(text))

    def list(self, backend: str | None = None) -> list[SessionRecord]:
        """Every record (of ``backend``), newest first."""
        folder = self.folder
        if not folder.is_dir():
            return []
        records = []
        for child in folder.glob("*.json"):
            if child.name.startswith("."):
                continue
            record = self.get(child.stem)
            if record is not None and (backend is None or record.backend == backend):
                records.append(record)
        records.sort(key=lambda r: (r.created, r.session_id), reverse=True)
        return records

    def find_sampler(self, sampler_id: str) -> tuple[SessionRecord, dict[str, Any]] | None:
        """The session holding ``sampler_id`` and the sampler's entry."""
        owner = self.get(sampler_id.split(":sample:", 1)[0]) if ":sample:" in sampler_id else None
        candidates = [owner] if owner is not None else []
        for record in [*candidates, *self.list()]:
            if sampler_id in record.samplers:
                return record, record.samplers[sampler_id]
        return None
