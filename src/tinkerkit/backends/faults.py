"""Fault injection for the offline backends: make chosen requests fail like a server error.

    service = tk.connect("mock", faults=[tk.testing.FailNth(3, kind="forward_backward")])

A failed request is not applied, so retrying it is safe — which is exactly what
retry logic needs to be tested against.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from tinkerkit.errors import InjectedFaultError


class Fault(Protocol):
    def should_fail(self, kind: str, index: int) -> bool:
        """Whether request number ``index`` (1-based, counting only ``kind``s it watches) fails."""
        ...

    def watches(self, kind: str) -> bool: ...


@dataclass
class FailNth:
    """Fail the ``n``-th request (1-based) of ``kind`` (any kind when None), ``times`` times in a row."""

    n: int
    kind: str | None = None
    times: int = 1

    def watches(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind

    def should_fail(self, kind: str, index: int) -> bool:
        return self.n <= index < self.n + self.times


@dataclass
class FailEvery:
    """Fail every ``k``-th request of ``kind`` (any kind when None)."""

    k: int
    kind: str | None = None

    def watches(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind

    def should_fail(self, kind: str, index: int) -> bool:
        return index % self.k == 0


class FaultInjector:
    """Counts requests per fault and raises ``InjectedFaultError`` when one says so."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._faults = list(faults)
        self._counts = [0] * len(self._faults)
        self._lock = threading.Lock()

    def check(self, kind: str) -> None:
        if not self._faults:
            return
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.watches(kind):
                    self._counts[i] += 1
                    if fault.should_fail(kind, self._counts[i]):
                        raise InjectedFaultError(kind, self._counts[i])
