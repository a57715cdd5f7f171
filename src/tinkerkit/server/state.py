"""What the server remembers: sessions, models, sampling sessions and pending futures.

Every request handler runs on the server's one event loop, so these tables need no
locks for the handlers themselves; the offline engines run on their own dispatcher
threads and only ever complete ``concurrent.futures.Future`` objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tinker import RequestFailedError
from tinker.types import RequestErrorCategory

if TYPE_CHECKING:
    from tinkerkit.backends.service_client import ServiceClient
    from tinkerkit.backends.training_client import TrainingClient

logger = logging.getLogger("tinkerkit.server")
T = TypeVar("T")
U = TypeVar("U")

# How long a request that arrived ahead of its turn (seq_id) waits for the requests
# before it. The SDK sends a client's requests in order, except the chunks of one big
# forward_backward, which race each other; a gap that never fills (a request the SDK
# reserved but never sent) must not stall the model forever.
OUT_OF_ORDER_HOLD_S = 5.0


def chain(source: Future[T], fn: Callable[[T], U]) -> Future[U]:
    """A future of ``fn(source.result())``; a failure of either passes through.

    Example:
        >>> done = chain(training_future, lambda tc: tc.model_id)
    """
    out: Future[U] = Future()

    def on_done(src: Future[T]) -> None:
        try:
            out.set_result(fn(src.result()))
        except BaseException as exc:
            out.set_exception(exc)

    source.add_done_callback(on_done)
    return out


def forward(source: Future[T], target: Future[T]) -> None:
    """Settle ``target`` as ``source`` settles; cancelling ``target`` cancels ``source``.

    For a future handed out before its work was submitted (a sample answered first, run
    after): ``target`` is the one the table holds, ``source`` the engine's.

    Example:
        >>> forward(client._submit_sample(...).future(), entry.future)
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
        # Raised by the offline clients for a bad argument: the caller's to fix.
        message, category = str(exc), RequestErrorCategory.User
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
        """Wait (bounded) for the requests before ``seq_id``, then hold the turn."""
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
class ModelSlot:
    """A model (training run) created through the server."""

    model_id: str
    client: TrainingClient  # the offline tinkerkit one
    sequencer: Sequencer = field(default_factory=Sequencer)


@dataclass
class SamplerSlot:
    """A sampling session; ``client`` resolves to the offline SamplingClient."""

    sampling_session_id: str
    client: Future[Any]
    base_model: str | None
    model_path: str | None
    clones: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Pending:
    """A submitted request: its future and what kind of result it resolves to."""

    request_id: str
    future: Future[Any]
    kind: str
    sample_ids: list[str] | None = None


class FutureTable:
    """Request id → pending future, resolved by ``/api/v1/retrieve_future``.

    A failed request is also logged (once per kind of request and error type): the SDK
    hands the failure to a future its user may never read, so the server's log is the
    one place it is sure to show.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}
        self._logged: set[tuple[str, str, str]] = set()
        # Ids are a per-server random prefix and a counter rather than uuid4s: asking the
        # kernel for randomness releases the GIL mid-handler, and an engine thread that
        # takes it then runs its whole request before the answer goes out.
        self._prefix = secrets.token_hex(8)
        self._ids = itertools.count(1)

    def _log_failure(
        self, kind: str, owner: str | None, request_id: str, future: Future[Any]
    ) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            return
        key = (owner or "", kind, type(exc).__name__)
        if key in self._logged:
            return
        self._logged.add(key)
        logger.warning(
            "%s request %s%s failed: %s: %s (later %s failures like this one%s are not logged)",
            kind,
            request_id,
            f" of {owner}" if owner else "",
            type(exc).__name__,
            exc,
            kind,
            f" of {owner}" if owner else "",
        )

    def __len__(self) -> int:
        return len(self._pending)

    def add(
        self, future: Future[Any], kind: str, *, num_samples: int = 0, owner: str | None = None
    ) -> Pending:
        """Store ``future`` under a fresh request id.

        Example:
            >>> entry = table.add(training.forward_backward(data, "cross_entropy").future(),
            ...                   "forward_backward")
            >>> entry.request_id
            'req-…'
        """
        request_id = f"req-{self._prefix}-{next(self._ids)}"
        ids = [f"{request_id}:{i}" for i in range(num_samples)] if num_samples else None
        entry = Pending(request_id, future, kind, ids)
        self._pending[request_id] = entry
        future.add_done_callback(lambda done: self._log_failure(kind, owner, request_id, done))
        return entry

    def get(self, request_id: str) -> Pending | None:
        return self._pending.get(request_id)

    def forget(self, request_id: str) -> None:
        """Drop a delivered result (the SDK caches it client-side)."""
        self._pending.pop(request_id, None)

    def cancel(self, request_id: str) -> None:
        entry = self._pending.get(request_id)
        if entry is not None:
            entry.future.cancel()


@dataclass
class Session:
    session_id: str
    created: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.time)
    finished: bool = False


class ServerState:
    """Everything one ``tinkerkit serve`` process holds for its clients."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service  # the offline tinkerkit ServiceClient
        # Warnings about the clients' requests (an optim_step that trained on nothing)
        # go to the server's log too: the SDK user sees no offline warnings.
        service._context.warning_log = logger
        self.rest = service._rest()
        self.sessions: dict[str, Session] = {}
        self.models: dict[str, ModelSlot] = {}
        self.samplers: dict[str, SamplerSlot] = {}
        self.futures = FutureTable()

    @property
    def backend(self) -> str:
        return str(self.service.backend)

    def new_session(self) -> Session:
        session = Session(f"session-{uuid.uuid4().hex[:16]}")
        self.sessions[session.session_id] = session
        return session

    def register_model(self, model_id: str, client: TrainingClient) -> ModelSlot:
        # Called from dispatcher threads when a create finishes: a dict store is atomic.
        slot = ModelSlot(model_id, client)
        self.models[model_id] = slot
        return slot

    def add_sampler(
        self, session_id: str, client: Future[Any], base_model: str | None, model_path: str | None
    ) -> SamplerSlot:
        slot = SamplerSlot(session_id, client, base_model, model_path)
        self.samplers[session_id] = slot
        return slot
