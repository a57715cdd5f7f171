"""What every offline client of one ``tk.connect(...)`` shares: engines, store, session."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from tinkerkit.backends.dispatch import Dispatcher
from tinkerkit.backends.engine import EngineFactory
from tinkerkit.backends.faults import FaultInjector
from tinkerkit.backends.futures import Origin, warn_at
from tinkerkit.backends.stability import SequenceRecords
from tinkerkit.backends.store import CheckpointStore


@dataclass
class OfflineContext:
    factory: EngineFactory
    store: CheckpointStore = field(default_factory=CheckpointStore)
    latency: float = 0.0
    faults: FaultInjector = field(default_factory=FaultInjector)
    sequences: SequenceRecords = field(default_factory=SequenceRecords)
    """Sequences sampled with ``record_stability_info=True`` (for ``stable_reinforce``)."""
    session_id: str = field(default_factory=lambda: f"session-{uuid.uuid4().hex[:16]}")
    """The offline session every client of this context belongs to (as one ServiceClient's
    session on the service): custom losses and recorded sequences are scoped to it."""
    closed: bool = False
    finish_reason: tuple[str, str | None] | None = None

    @property
    def backend(self) -> str:
        return self.factory.name

    warning_log: logging.Logger | None = None
    """Set by ``tinkerkit serve``: its clients' warnings go to the server's log instead
    (the requests come from HTTP handlers, not from a user's line of code)."""

    def dispatcher(self, name: str, *, label: str | None = None) -> Dispatcher:
        return Dispatcher(
            name,
            self.latency,
            self.faults,
            label=label,
            warn=self.warn,
            locate=self.warning_log is None,
        )

    def warn(self, message: str, category: type[Warning], origin: Origin) -> None:
        """A tinkerkit warning about a request: at the user's line, or in the server log."""
        if self.warning_log is not None:
            self.warning_log.warning("%s: %s", category.__name__, message)
        else:
            warn_at(message, category, origin)

    # --- the session's record (backends/sessions.py) --------------------------------------

    def open_session(
        self,
        user_metadata: dict[str, str] | None = None,
        project_id: str | None = None,
        display_name: str | None = None,
    ) -> None:
        """The ServiceClient's session arguments, recorded with the session when it is
        first used (its first training run or sampler), as the SDK creates it lazily."""
        self.store.sessions.expect(
            self.session_id,
            user_metadata=dict(user_metadata) if user_metadata else None,
            project_id=project_id,
            display_name=display_name,
        )

    def note_sampler(self, sampler_id: str, base_model: str, model_path: str | None) -> None:
        """Record a sampler created for this session (``RestClient.get_sampler``,
        ``get_session(...).sampler_ids``)."""
        self.store.sessions.add_sampler(
            self.session_id, self.backend, sampler_id, base_model, model_path
        )

    def finish_session(self, status: str, detail: str | None) -> None:
        """Mark the session finished (first reason wins, as on the service); a recorded
        session keeps the reason (``get_session``, ``search_sessions``)."""
        if self.finish_reason is None:
            self.finish_reason = (status, detail)
        self.closed = True
        try:
            self.store.sessions.finish(self.session_id, status, detail)
        except OSError as exc:  # closing must not fail on an unwritable TINKERKIT_HOME
            logging.getLogger("tinkerkit").warning(
                "could not record the end of session %s: %s", self.session_id, exc
            )

    def check_open(self) -> None:
        """Refuse new requests once the ServiceClient was closed (as the SDK does)."""
        if self.closed:
            raise RuntimeError("ServiceClient is closed")
