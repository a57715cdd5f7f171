"""Keep requests in flight: submit the next step before reading the previous result.

The guide's loop waits for every result, so each step costs two round trips. Here a
step's futures are queued, and results are read only when ``depth`` steps are already
in flight — the service (or an offline backend) works on step k+1 while step k's
result travels back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tinkerkit._sync import raise_if_stopped


@dataclass
class Pending:
    """Futures submitted together, and what to do once they have all resolved."""

    futures: dict[str, Any]
    on_done: Callable[[dict[str, Any]], None]


class Pipeline:
    """A FIFO of ``Pending`` entries, resolved in submission order."""

    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        self._queue: deque[Pending] = deque()

    def submit(self, futures: dict[str, Any], on_done: Callable[[dict[str, Any]], None]) -> None:
        """Queue an entry; resolve the oldest ones while more than ``depth`` are in flight."""
        self._queue.append(Pending(futures, on_done))
        while len(self._queue) > self.depth:
            self._resolve_oldest()

    def _resolve_oldest(self) -> None:
        # An interrupted caller (a notebook) stops the loop here too: between entries, so
        # every line written so far is whole and every checkpoint listed has landed.
        raise_if_stopped()
        entry = self._queue.popleft()
        results = {name: future.result() for name, future in entry.futures.items()}
        entry.on_done(results)

    def drain(self) -> None:
        """Resolve everything still in flight."""
        while self._queue:
            self._resolve_oldest()
