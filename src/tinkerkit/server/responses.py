"""Small helpers every route module uses: body parsing, JSON and error responses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pydantic
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive
from tinker import APIStatusError

from tinkerkit.server.service import Service
from tinkerkit.server.state import Pending

M = TypeVar("M", bound=pydantic.BaseModel)
# Bodies (and results) larger than this are parsed (rendered) off the event loop, so one
# big request does not stall every other client's.
PARSE_IN_THREAD_BYTES = 256 * 1024


class HTTPError(Exception):
    """Answer the request with ``status`` and ``{"detail": message}`` (the service's shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def service_of(request: Request) -> Service:
    """The service of the API key that sent ``request`` (set by ``AuthMiddleware``)."""
    service: Service = request.scope["state"]["service"]
    return service


def json_response(payload: Any, status: int = 200, **kwargs: Any) -> Response:
    """JSON as the SDK reads it; non-finite floats (a NaN loss) travel as ``NaN``, which
    Python's ``json`` reads back, rather than failing the answer."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=True).encode()
    return Response(body, status_code=status, media_type="application/json", **kwargs)


# No request of the SDK nests deeper than a few levels; a body nested deeper is refused
# before it is parsed (a user_metadata nested 900 deep parses, then fails every step that
# walks it: pydantic, the run record's JSON).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def json_depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings
    are not counted).

    Example:
        >>> json_depth(b'{"a": [1, {"b": "[[["}]}')
        3
    """
    codes = np.frombuffer(_JSON_STRING.sub(b"", body), dtype=np.uint8)
    return int(np.cumsum(_BRACKET_STEP[codes], dtype=np.int64).max(initial=0))


def _bracket_steps() -> Any:
    steps = np.zeros(256, dtype=np.int8)
    steps[[0x5B, 0x7B]] = 1  # [ {
    steps[[0x5D, 0x7D]] = -1  # ] }
    return steps


_BRACKET_STEP = _bracket_steps()


def _loads(body: bytes) -> Any:
    # Few brackets in all (every request the SDK sends): no need to measure the depth.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(body) > MAX_JSON_DEPTH:
        raise RecursionError
    return json.loads(body or b"{}")


async def read_json(request: Request, what: str = "JSON body") -> Any:
    """The request's JSON body (``{}`` when empty), decoded off the event loop when it
    is big; malformed JSON, or JSON nested over ``MAX_JSON_DEPTH`` levels, is a 400.

    Example:
        >>> body = await read_json(request)
    """
    body = await request.body()
    try:
        if len(body) > PARSE_IN_THREAD_BYTES:
            return await asyncio.to_thread(_loads, body)
        return _loads(body)
    except RecursionError as exc:
        raise HTTPError(400, f"invalid {what}: JSON nested too deeply") from exc
    except ValueError as exc:
        raise HTTPError(400, f"invalid {what}: {exc}") from exc


def describe_invalid(exc: pydantic.ValidationError, limit: int = 4) -> str:
    """A validation error as one line: each field that does not fit and why.

    A ``null`` where a number belongs is how the SDK sends a NaN or an infinity (its JSON
    encoder writes them as ``null``), so the message says so.

    Example:
        >>> describe_invalid(err)
        'optim_params.AdamParams.learning_rate: Input should be a valid number, got null ...'
    """
    errors = exc.errors(include_url=False)
    nulls = [e for e in errors if e.get("input", ...) is None and e["type"] in _NUMBER_ERRORS]
    parts: list[str] = []
    # A null number explains itself; the other members of a union it failed are noise.
    for item in nulls or errors:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        text = f"{where}: {item['msg']}"
        if nulls:
            text += ", got null (a NaN or infinite number is sent as null): pass a finite number"
        if text not in parts:
            parts.append(text)
    shown = "; ".join(parts[:limit])
    return shown + (f"; and {len(parts) - limit} more" if len(parts) > limit else "")


_NUMBER_ERRORS = ("float_type", "int_type", "float_parsing", "int_parsing", "finite_number")


def validate(model: type[M], payload: Any) -> M:
    """``payload`` as a ``tinker.types`` request model (400 naming what does not fit)."""
    try:
        return model.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise HTTPError(400, f"invalid {model.__name__} body: {describe_invalid(exc)}") from exc
    except RecursionError as exc:
        raise HTTPError(400, f"invalid {model.__name__} body: nested too deeply") from exc


async def parse(request: Request, model: type[M]) -> M:
    """Validate a JSON body against a ``tinker.types`` request model (400 if it does not fit).

    Example:
        >>> req = await parse(request, types.OptimStepRequest)
    """
    return validate(model, await read_json(request, f"{model.__name__} body"))


def ok(payload: pydantic.BaseModel | dict[str, Any] | None) -> Response:
    """A JSON response of a pydantic model (``None`` fields dropped, as the SDK sends them)."""
    if isinstance(payload, pydantic.BaseModel):
        return json_response(payload.model_dump(mode="json", exclude_none=True))
    return json_response(payload if payload is not None else {})


def error(status: int, message: str) -> Response:
    return json_response({"detail": message}, status)


def untyped_future(
    entry: Pending, model_id: str | None = None, background: BackgroundTask | None = None
) -> Response:
    """The ``UntypedAPIFuture`` a submitting endpoint answers with; ``background`` runs
    once the answer is sent."""
    body: dict[str, Any] = {"request_id": entry.request_id}
    if model_id is not None:
        body["model_id"] = model_id
    if entry.sample_ids is not None:
        body["sample_sequence_ids"] = entry.sample_ids
    return json_response(body, background=background)


# --- stopping: requests that wait are answered, not cancelled --------------------------------

_STOPPING = "the tinkerkit server is stopping"


class ServerStopping(Exception):
    """The server stops while this request waits for its body: answered 503, not cancelled."""


@dataclass
class _Waits:
    """What the requests on one event loop (one server) are waiting for."""

    stopping: bool = False
    events: set[asyncio.Event] = field(default_factory=set)
    readers: set[asyncio.Task[Any]] = field(default_factory=set)


_WAITS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waits] = weakref.WeakKeyDictionary()


def _waits() -> _Waits:
    loop = asyncio.get_running_loop()
    waits = _WAITS.get(loop)
    if waits is None:
        waits = _WAITS[loop] = _Waits()
    return waits


def release_waiting_requests() -> None:
    """Answer every request of this loop's server that waits (a long poll: "try again";
    a body still arriving: 503) so the server stops without cancelling one of them: a
    cancelled request is a traceback in the log, and waits out the shutdown timeout.
    Called on the server's loop as it starts to stop (``runner.UvicornServer``).

    Example:
        >>> release_waiting_requests()   # in the server's event loop
    """
    waits = _waits()
    waits.stopping = True
    for event in waits.events:
        event.set()
    for task in waits.readers:
        task.cancel(_STOPPING)


async def receive_body(receive: Receive) -> Message:
    """``receive()`` for a request body, raising ``ServerStopping`` if the server stops
    meanwhile (a client that sends half a body must not hold the shutdown up).

    Example:
        >>> message = await receive_body(receive)
    """
    waits = _waits()
    if waits.stopping:
        raise ServerStopping(_STOPPING)
    task = asyncio.current_task()
    assert task is not None
    waits.readers.add(task)
    try:
        return await receive()
    except asyncio.CancelledError:
        # Cancelled by release_waiting_requests (nothing else is awaited here while the
        # task is registered): not a cancellation of the request, an answer to give.
        if waits.stopping and task.uncancel() == 0:
            raise ServerStopping(_STOPPING) from None
        raise
    finally:
        waits.readers.discard(task)


async def wait_done(future: Future[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a thread-completed future, without cancelling it;
    whether it is done (False when the server stops first).

    Example:
        >>> if not await wait_done(entry.future, 10.0):
        ...     return try_again(entry)
    """
    if future.done():
        return True
    waits = _waits()
    if waits.stopping:
        return False
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def wake(_: Future[Any]) -> None:
        # The wait may be long over (a timed-out long poll, a server stopped meanwhile):
        # waking a closed loop must not raise in the engine thread that settles the future.
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    future.add_done_callback(wake)
    waits.events.add(event)
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return future.done()
    finally:
        waits.events.discard(event)
    return future.done()


async def result_of(future: Future[Any], what: str, timeout: float = 300.0) -> Any:
    """The result of a short service call (a client creation), or an HTTP error."""
    if not await wait_done(future, timeout):
        if _waits().stopping:
            raise HTTPError(503, f"{what}: {_STOPPING}")
        raise HTTPError(504, f"{what} did not finish within {timeout:.0f}s")
    exc = future.exception()
    if exc is not None:
        raise HTTPError(status_for(exc), str(exc) or type(exc).__name__)
    return future.result()


# Statuses the SDK retries, for minutes: never the answer to a request its caller must fix.
_RETRIED_BY_SDK = (408, 409, 429)


def status_for(exc: BaseException) -> int:
    """The HTTP status whose SDK exception class matches ``exc``.

    A ``tinker.APIStatusError`` (``CheckpointNotFoundError`` is a ``tinker.NotFoundError``,
    ``WrongCheckpointKindError`` a ``tinker.BadRequestError``, ...) answers with its own
    ``status_code``, so the SDK raises that class; any other refusal (a ``RequestError``,
    a ``ValueError``) is the caller's to fix: 400.

    Example:
        >>> status_for(CheckpointNotFoundError("tinker://run/weights/x"))
        404
    """
    if isinstance(exc, APIStatusError):
        status = int(exc.status_code)
        return 400 if status in _RETRIED_BY_SDK else status
    return 400
