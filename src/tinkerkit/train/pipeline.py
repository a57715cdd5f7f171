"""Keep requests in flight: submit the next step before reading the previous result.

The guide's loop waits for every result, so each step costs two round trips. Here each
submitted item (a loop's ``Submitted...`` record of futures) is queued with the function
that finishes it, and items are finished only once ``depth`` are already in flight —
the service (or an offline backend) works on step k+1 while step k's result travels back.

    pipeline = Pipeline(depth=2)
    pipeline.submit(loop.submit(step), loop.finish)
    pipeline.drain()
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from tinkerkit._sync import raise_if_stopped


class Pipeline:
    """A FIFO of (submitted, finish) pairs, finished in submission order."""

    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        self._queue: deque[tuple[Any, Callable[[Any], object]]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, submitted: Any, finish: Callable[[Any], object]) -> None:
        """Queue ``submitted``; finish the oldest items while more than ``depth`` are in flight.

        Example:
            >>> pipeline.submit(SubmittedStep(step, fb_future, opt_future), loop.finish)
        """
        self._queue.append((submitted, finish))
        while len(self._queue) > self.depth:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        # An interrupted caller (a notebook) stops the loop here too: between items, so
        # every line written so far is whole and every checkpoint listed has landed.
        raise_if_stopped()
        submitted, finish = self._queue.popleft()
        finish(submitted)

    def drain(self) -> None:
        """Finish everything still in flight."""
        while self._queue:
            self._finish_oldest()
