"""What every offline client of one ``tk.connect(...)`` shares, and the client futures."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tinker.lib.public_interfaces.api_future import AwaitableConcurrentFuture

from tinkerkit.backends.dispatch import Dispatcher
from tinkerkit.backends.engine import EngineFactory
from tinkerkit.backends.faults import FaultInjector
from tinkerkit.backends.stability import SequenceRecords
from tinkerkit.backends.store import CheckpointStore

C = TypeVar("C")


@dataclass
class OfflineContext:
    factory: EngineFactory
    store: CheckpointStore = field(default_factory=CheckpointStore)
    latency: float = 0.0
    faults: FaultInjector = field(default_factory=FaultInjector)
    sequences: SequenceRecords = field(default_factory=SequenceRecords)
    """Sequences sampled with ``record_stability_info=True`` (for ``stable_reinforce``)."""

    @property
    def backend(self) -> str:
        return self.factory.name

    def dispatcher(self, name: str) -> Dispatcher:
        return Dispatcher(name, self.latency, self.faults)


class ClientFuture(AwaitableConcurrentFuture[C]):
    """A future of a client, as tinker 0.38's ``create_*_client`` methods return.

    ``.result()`` or ``await`` gives the client. Like the SDK's back-compat wrapper, it
    also forwards attribute access to the client (with the SDK's ``FutureWarning``), so
    pre-0.38 code that used the return value as the client keeps running.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        warnings.warn(
            "Using the future returned by a client-creation method as the client is "
            "deprecated (tinker 0.38); call .result() on it, or await it, first.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(self.result(), name)

    def __repr__(self) -> str:
        state = "done" if self.future().done() else "pending"
        return f"<ClientFuture {state}>"
