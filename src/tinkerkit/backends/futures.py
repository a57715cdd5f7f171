"""The futures offline clients hand out: the SDK's own future types, plus one guarantee.

Every request returns the type the tinker 0.38 SDK returns for it —
``AwaitableConcurrentFuture`` for training and REST requests, the SDK's
``concurrent.futures``-compatible wrapper for ``sample``/``compute_logprobs`` — so
``isinstance`` checks written against the service hold offline.

The guarantee goes beyond the SDK: **a failed request is never silent**. Ported guide
loops call ``training.forward_backward(...)`` without reading the future; if every such
request fails validation, the run "succeeds" having trained nothing. Like asyncio's
"exception was never retrieved", a request whose future fails and is dropped without
being read is reported — once per client and kind of failure — as an
``UnretrievedFailureWarning`` naming the request, where it was submitted, and the error.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tinker.lib.backcompat_concurrent_future import _AwaitableFutureCompatWrapper
from tinker.lib.public_interfaces.api_future import APIFuture, AwaitableConcurrentFuture

from tinkerkit.errors import UnretrievedFailureWarning

T = TypeVar("T")

_PACKAGE_DIR = __file__.rsplit("/backends/", 1)[0]


@dataclass(frozen=True)
class Origin:
    """Which request a future belongs to, and the user's line that submitted it."""

    client: str
    kind: str
    number: int
    filename: str
    lineno: int

    def describe(self) -> str:
        where = f" (submitted at {self.filename}:{self.lineno})" if self.lineno else ""
        return f"{self.kind} #{self.number} on {self.client}{where}"


def caller_location() -> tuple[str, int]:
    """The first stack frame outside tinkerkit and the tinker SDK: the user's line."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_PACKAGE_DIR) and "/tinker/" not in name:
            return name, frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>", 0


Warn = Callable[[str, type[Warning], Origin], None]


def warn_at(message: str, category: type[Warning], origin: Origin) -> None:
    """Issue ``message`` as a warning attributed to the user's line that made the request."""
    warnings.warn_explicit(message, category, origin.filename, origin.lineno, module="tinkerkit")


class FailureReporter:
    """Reports unread failures of one client: the first of each (kind, error type) only."""

    def __init__(self, warn: Warn = warn_at) -> None:
        self._warn = warn
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def report(self, origin: Origin, exc: BaseException, why: str) -> None:
        key = (origin.kind, type(exc).__name__)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        message = (
            f"{origin.describe()} failed and {why}: {type(exc).__name__}: {exc} "
            "Read every request's future (.result() or await) to see its errors; later "
            f"{origin.kind} failures like this one on this client are not reported again."
        )
        self._warn(message, UnretrievedFailureWarning, origin)


class _Tracked(Generic[T]):
    """Mixin over an SDK future type wrapping a ``concurrent.futures.Future`` (its
    ``_future``): notices whether the result was read, and reports an unread failure when
    the future is dropped."""

    _future: Future[T]

    def __init__(
        self,
        future: Future[T],
        origin: Origin | None = None,
        reporter: FailureReporter | None = None,
    ) -> None:
        super().__init__(future)  # type: ignore[call-arg]
        self._origin, self._reporter, self._retrieved = origin, reporter, False

    def result(self, timeout: float | None = None) -> T:
        self._retrieved = True
        return super().result(timeout)  # type: ignore[misc]

    async def result_async(self, timeout: float | None = None) -> T:
        self._retrieved = True
        return await super().result_async(timeout)  # type: ignore[misc]

    def future(self) -> Future[T]:
        self._retrieved = True  # whoever takes the raw future takes responsibility for it
        return super().future()  # type: ignore[misc]

    def __del__(self) -> None:
        if self._retrieved or self._origin is None or self._reporter is None:
            return
        origin, reporter = self._origin, self._reporter

        def check(done: Future[Any]) -> None:
            if done.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                reporter.report(origin, exc, "its result was never read")

        try:
            inner = self._future
            if inner.done():
                check(inner)
            else:
                inner.add_done_callback(check)
        except Exception:  # a finalizer must not raise (e.g. at interpreter exit)
            return


class RequestFuture(_Tracked[T], AwaitableConcurrentFuture[T]):
    """``AwaitableConcurrentFuture`` (what the SDK returns) that reports unread failures."""


class SampleFuture(_Tracked[T], _AwaitableFutureCompatWrapper[T]):
    """What the SDK's ``sample``/``compute_logprobs`` return (also a ``concurrent.futures``
    future), reporting unread failures like ``RequestFuture``."""

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._retrieved = True
        return super().exception(timeout)


def done_future(value: T) -> AwaitableConcurrentFuture[T]:
    """An already-completed future of ``value``."""
    future: Future[T] = Future()
    future.set_result(value)
    return AwaitableConcurrentFuture(future)


def plain(future: APIFuture[Any]) -> AwaitableConcurrentFuture[Any]:
    """The SDK's plain ``AwaitableConcurrentFuture`` over a request's future, for wrapping
    in the SDK's back-compat client futures (which read it themselves)."""
    return AwaitableConcurrentFuture(future.future())
