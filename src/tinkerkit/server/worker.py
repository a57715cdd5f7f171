"""Ordered execution with simulated network latency and injected faults.

Each model owns one ``Worker``: its requests run one at a time, in the order the
sequencer admits them (the service's per-model ordering), on the worker's thread. With
``latency=L`` a result is released no sooner than ``L`` seconds after its submission,
as if it had crossed a network, while the engine already works on the next request —
which is what makes pipelining pay. ``faults`` (``tinkerkit.testing.FailNth``, ...)
fail chosen requests before they run, like a server error.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from tinkerkit.backends.faults import FaultInjector

T = TypeVar("T")


class Later:
    """What a submitted function returns when its result comes later, from ``future``
    (a sample batch decoding on the engine's own thread): the worker moves on at once and
    the request's future settles when ``future`` does."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future


class _Delivery:
    """One daemon thread that completes futures at their due time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Future[Any], bool, Any]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def deliver(self, due: float, future: Future[Any], ok: bool, value: Any) -> None:
        if time.monotonic() >= due:
            _complete(future, ok, value)
            return
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._counter), future, ok, value))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tinkerkit-delivery", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, future, ok, value = heapq.heappop(self._heap)
            _complete(future, ok, value)


def _complete(future: Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_delivery = _Delivery()


def _settle(due: float, future: Future[Any], done: Future[Any]) -> None:
    exc = done.exception() if not done.cancelled() else CancelledError()
    if exc is not None:
        _delivery.deliver(due, future, False, exc)
    else:
        _delivery.deliver(due, future, True, done.result())


class Worker:
    """Runs submitted functions in order on one thread; delivers results after ``latency``.

    Example:
        >>> worker = Worker("tinkerkit-model", latency=0.05)
        >>> worker.submit("optim_step", lambda: 1).result()
        1
    """

    def __init__(
        self, name: str, latency: float = 0.0, faults: FaultInjector | None = None
    ) -> None:
        self.latency = latency
        self._faults = faults or FaultInjector()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, kind: str, fn: Callable[[], T | Later]) -> Future[T]:
        """Queue ``fn``; a future of its result (or of its ``Later``'s), released
        ``latency`` s after now."""
        future: Future[T] = Future()
        due = time.monotonic() + self.latency

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                self._faults.check(kind)
                value: Any = fn()
                ok = True
            except BaseException as exc:
                value, ok = exc, False
            if isinstance(value, Later):
                value.future.add_done_callback(lambda done: _settle(due, future, done))
                return
            _delivery.deliver(due, future, ok, value)

        self._executor.submit(run)
        return future

    def close(self) -> None:
        """Stop taking requests; queued ones still run (their futures settle)."""
        self._executor.shutdown(wait=False)
