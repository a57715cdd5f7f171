"""What every offline client of one ``tk.connect(...)`` shares: engines, store, session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tinkerkit.backends.dispatch import Dispatcher
from tinkerkit.backends.engine import EngineFactory
from tinkerkit.backends.faults import FaultInjector
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

    def dispatcher(self, name: str, *, label: str | None = None) -> Dispatcher:
        return Dispatcher(name, self.latency, self.faults, label=label)

    def finish_session(self, status: str, detail: str | None) -> None:
        """Mark the session finished (first reason wins, as on the service)."""
        if self.finish_reason is None:
            self.finish_reason = (status, detail)
        self.closed = True

    def check_open(self) -> None:
        """Refuse new requests once the ServiceClient was closed (as the SDK does)."""
        if self.closed:
            raise RuntimeError("ServiceClient is closed")
