"""Request ordering and pending results: the sequencer of each model, the futures table.

Every request handler runs on the server's one event loop, so these tables need no
locks for the handlers themselves; engines run on their own worker threads and only
ever complete ``concurrent.futures.Future`` objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tinker import RequestFailedError
from tinker.types import RequestErrorCategory

from tinkerkit.paths import describe_os_error

logger = logging.getLogger("tinkerkit.server")
T = TypeVar("T")
U = TypeVar("U")

# How long a request that arrived ahead of its turn (seq_id) waits for the requests
# before it. The SDK sends a model's requests one after another (the service tells it
# to send a big forward_backward's chunks in turn too: parallel_fwdbwd_chunks=False),
# and a request the service refuses still takes its turn; a gap is a request the SDK
# reserved and then refused itself (a bad argument), which will never come. Only a
# client that sends concurrently waits here at all.
OUT_OF_ORDER_HOLD_S = 0.05
# How long a finished result waits for its retrieve_future before it is dropped (the
# SDK fetches every result at once; one nobody fetches belongs to a client that is gone).
RESULT_TTL_S = 600.0
# How long a delivered result stays retrievable: the answer may never reach a client
# whose connection dropped meanwhile, and the SDK then retries the same retrieve_future
# (after 1, 2, 4, 8 s); answering it again costs a little memory, a 404 loses the result.
DELIVERED_KEEP_S = 30.0


def chain(source: Future[T], fn: Callable[[T], U]) -> Future[U]:
    """A future of ``fn(source.result())``; a failure of either passes through.

    Example:
        >>> done = chain(model_future, lambda model: model.model_id)
    """
    out: Future[U] = Future()

    def on_done(src: Future[T]) -> None:
        if src.cancelled():
            out.cancel()
            return
        try:
            out.set_result(fn(src.result()))
        except BaseException as exc:
            out.set_exception(exc)

    source.add_done_callback(on_done)
    return out


def forward(source: Future[T], target: Future[T]) -> None:
    """Settle ``target`` as ``source`` settles; cancelling ``target`` cancels ``source``.

    Example:
        >>> forward(sampler.sample(call), entry.future)
    """

    def settle(src: Future[T]) -> None:
        if target.done():  # cancelled meanwhile
            return
        if src.cancelled():
            target.cancel()
        elif (exc := src.exception()) is not None:
            target.set_exception(exc)
        else:
            target.set_result(src.result())

    target.add_done_callback(lambda t: source.cancel() if t.cancelled() else None)
    source.add_done_callback(settle)


def failed(exc: BaseException) -> Future[Any]:
    """A future that has already failed with ``exc`` (a refused submission)."""
    out: Future[Any] = Future()
    out.set_exception(exc)
    return out


def done(value: T) -> Future[T]:
    """A future that already holds ``value``."""
    out: Future[T] = Future()
    out.set_result(value)
    return out


def failure_body(exc: BaseException) -> dict[str, str]:
    """The ``RequestFailedResponse`` JSON the SDK turns into ``tinker.RequestFailedError``.

    Example:
        >>> failure_body(ValueError("No data provided"))
        {'error': 'No data provided', 'category': 'user'}
    """
    if isinstance(exc, RequestFailedError):
        # tinkerkit's errors format themselves; the SDK's own keep .message.
        message, category = str(exc) or exc.message, exc.category
    elif isinstance(exc, ValueError | TypeError | KeyError | IndexError | NotImplementedError):
        # A bad argument: the caller's to fix.
        message, category = str(exc), RequestErrorCategory.User
    elif isinstance(exc, OSError) and exc.strerror:  # a full disk: where, and what to do
        message, category = describe_os_error(exc), RequestErrorCategory.Server
    else:
        message, category = f"{type(exc).__name__}: {exc}", RequestErrorCategory.Server
    return {"error": message or type(exc).__name__, "category": category.value}


class Sequencer:
    """Applies one model's requests in ``seq_id`` order, as the service does."""

    def __init__(self, first: int = 1) -> None:
        self._next = first
        self._changed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def turn(self, seq_id: int | None) -> AsyncIterator[None]:
        """Wait (bounded) for the requests before ``seq_id``, then hold the turn. The
        turn passes on however the body ends, a refusal included."""
        if seq_id is not None:
            deadline = time.monotonic() + OUT_OF_ORDER_HOLD_S
            while seq_id > self._next and (left := deadline - time.monotonic()) > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            if seq_id > self._next:
                logger.warning("seq_id %d ran ahead of %d; applying it anyway", seq_id, self._next)
        try:
            yield
        finally:
            if seq_id is not None and seq_id >= self._next:
                self._next = seq_id + 1
                self._changed.set()


@dataclass
class Pending:
    """A submitted request: its future, what it resolves to, and who asked."""

    request_id: str
    future: Future[Any]
    kind: str
    owner: str | None = None
    sample_ids: list[str] | None = None
    finished_at: float | None = None
    delivered_at: float | None = None


@dataclass
class FutureTable:
    """Request id → pending future, resolved by ``/api/v1/retrieve_future``.

    A failed request is logged (once per owner, kind of request and error type): the
    SDK hands the failure to a future its user may never read, so the server's log is the
    one place it is sure to show. Results nobody retrieves within ``ttl_s`` of finishing
    are dropped (a failed one with a warning), so a client that went away costs nothing;
    a delivered result stays retrievable for ``keep_delivered_s`` (at most ``ttl_s``), in
    case its answer was lost on the way.

    Example:
        >>> table = FutureTable(ttl_s=60.0)
        >>> entry = table.add(done(1), "optim_step")
        >>> table.forget(entry.request_id)      # delivered: kept a little, then dropped
    """

    ttl_s: float = RESULT_TTL_S
    keep_delivered_s: float = DELIVERED_KEEP_S
    on_unretrieved_failure: Callable[[Pending, BaseException], None] | None = None
    _pending: dict[str, Pending] = field(default_factory=dict)
    _logged: set[tuple[str, str, str]] = field(default_factory=set)
    # Ids are a per-server random prefix and a counter rather than uuid4s: asking the
    # kernel for randomness releases the GIL mid-handler, and an engine thread that
    # takes it then runs its whole request before the answer goes out.
    _prefix: str = field(default_factory=lambda: secrets.token_hex(8))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _last_sweep: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self,
        future: Future[Any],
        kind: str,
        *,
        num_samples: int = 0,
        owner: str | None = None,
        describe: str | None = None,
    ) -> Pending:
        """Store ``future`` under a fresh request id.

        Example:
            >>> entry = table.add(model.optim_step(params), "optim_step", owner=model.model_id)
            >>> entry.request_id
            'req-…'
        """
        self._sweep()
        request_id = f"req-{self._prefix}-{next(self._ids)}"
        ids = [f"{request_id}:{i}" for i in range(num_samples)] if num_samples else None
        entry = Pending(request_id, future, kind, owner, ids)
        self._pending[request_id] = entry
        label = describe or f"{kind} request {request_id}"
        future.add_done_callback(lambda f: self._finished(entry, label, f))
        return entry

    def _finished(self, entry: Pending, label: str, future: Future[Any]) -> None:
        entry.finished_at = time.monotonic()
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            return
        key = (entry.owner or "", entry.kind, type(exc).__name__)
        if key in self._logged:
            return
        self._logged.add(key)
        owner = f" of {entry.owner}" if entry.owner else ""
        logger.warning(
            "%s%s failed: %s: %s (later %s failures like this one%s are not logged)",
            label,
            owner,
            type(exc).__name__,
            exc,
            entry.kind,
            owner,
        )

    def get(self, request_id: str) -> Pending | None:
        return self._pending.get(request_id)

    def forget(self, request_id: str) -> None:
        """Mark a result delivered (the SDK caches it client-side): dropped after
        ``keep_delivered_s``, without the warning of a result nobody read."""
        entry = self._pending.get(request_id)
        if entry is not None and entry.delivered_at is None:
            entry.delivered_at = time.monotonic()

    def cancel(self, request_id: str) -> None:
        entry = self._pending.get(request_id)
        if entry is not None:
            entry.future.cancel()

    def _sweep(self) -> None:
        now = time.monotonic()
        keep = min(self.keep_delivered_s, self.ttl_s)
        if now - self._last_sweep < min(keep, 30.0):
            return
        self._last_sweep = now
        delivered = [
            e
            for e in self._pending.values()
            if e.delivered_at is not None and now - e.delivered_at >= keep
        ]
        for entry in delivered:
            del self._pending[entry.request_id]
        stale = [
            e
            for e in self._pending.values()
            if e.delivered_at is None
            and e.finished_at is not None
            and now - e.finished_at >= self.ttl_s
        ]
        for entry in stale:
            del self._pending[entry.request_id]
            future = entry.future
            exc = None if future.cancelled() else future.exception()
            if exc is not None and self.on_unretrieved_failure is not None:
                self.on_unretrieved_failure(entry, exc)
