"""Ordered execution with simulated network latency.

Each training client owns one ``Dispatcher``: requests run one at a time in
submission order on its worker thread (the service's per-client ordering), so a
``forward_backward`` and an ``optim_step`` submitted back to back apply in order
without the caller waiting. With ``latency=L`` a result is delivered no sooner than
``L`` seconds after its submission, as if it had crossed a network — while the
engine already works on the next request, which is what makes pipelining pay.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from tinkerkit.backends.faults import FaultInjector
from tinkerkit.backends.futures import (
    FailureReporter,
    Origin,
    RequestFuture,
    SampleFuture,
    Warn,
    caller_location,
    warn_at,
)

T = TypeVar("T")


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
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_delivery = _Delivery()


class Dispatcher:
    """Runs submitted functions in order on one thread; delivers results after ``latency``.

    ``label`` names the client in warnings ("TrainingClient tinker://run-…"); every
    request gets a number per kind, so an unread failure can say which one it was.
    """

    def __init__(
        self,
        name: str,
        latency: float = 0.0,
        faults: FaultInjector | None = None,
        *,
        label: str | None = None,
        warn: Warn = warn_at,
        locate: bool = True,
    ):
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        self.latency = latency
        self.label = label or name
        self.reporter = FailureReporter(warn)
        self._locate = locate
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._faults = faults or FaultInjector()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def origin(self, kind: str) -> Origin:
        """The next request of ``kind``: its number and the user's line submitting it."""
        with self._count_lock:
            self._counts[kind] += 1
            number = self._counts[kind]
        filename, lineno = caller_location() if self._locate else ("<served>", 0)
        return Origin(self.label, kind, number, filename, lineno)

    def submit(
        self, kind: str, fn: Callable[[], T], *, origin: Origin | None = None
    ) -> RequestFuture[T]:
        """Queue ``fn``; the returned future is awaitable and has ``.result()``."""
        origin = origin or self.origin(kind)
        return RequestFuture(self._run(kind, fn), origin, self.reporter)

    def submit_sample(self, kind: str, fn: Callable[[], T]) -> SampleFuture[T]:
        """Like ``submit``, but the future type the SDK's ``sample`` returns."""
        return SampleFuture(self._run(kind, fn), self.origin(kind), self.reporter)

    def _run(self, kind: str, fn: Callable[[], T]) -> Future[T]:
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
            _delivery.deliver(due, future, ok, value)

        self._executor.submit(run)
        return future
