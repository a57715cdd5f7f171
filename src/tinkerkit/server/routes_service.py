"""Session-level endpoints: health, client config, sessions, telemetry, capabilities.

Sessions the SDK creates (``POST /create_session``) are recorded in the offline store,
with their metadata and finish reason, so ``RestClient.list_sessions``/``get_session``
list them. The model and sampler endpoints know nothing of sessions: ``in_session``
wraps them and files what they create under the SDK session that asked.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from tinker import types

from tinkerkit.backends.sessions import SessionStore
from tinkerkit.server.responses import HTTPError, error, ok, parse, read_json, state_of
from tinkerkit.server.state import ServerState, chain

logger = logging.getLogger("tinkerkit.server")
Handler = Callable[[Request], Awaitable[Response]]


def client_config() -> types.ClientConfigResponse:
    """The feature flags this server hands the SDK.

    JWT exchange off (the local key goes on every request); httpx's own transport
    (no pyqwest); uncompressed protobuf forward_backward bodies; per-request future
    polling (no session poller, no server-side custom losses: not implemented here).

    Example:
        >>> client_config().pjwt_auth_enabled
        False
    """
    return types.ClientConfigResponse(
        pjwt_auth_enabled=False,
        credential_default_source="api_key",
        use_pyqwest_transport=False,
        proto_compress_fwdbwd=False,
        parallel_fwdbwd_chunks=True,
        sample_use_retrieve_futures=False,
        custom_loss_server_side=False,
        sample_join_sampling_session=True,
    )


async def healthz(request: Request) -> Response:
    return ok(types.HealthResponse(status="ok"))


async def config(request: Request) -> Response:
    await parse(request, types.ClientConfigRequest)
    response = ok(client_config())
    # The SDK asks for its config through a connection pool of its own that it never
    # closes; when that client is garbage-collected in another thread that runs an event
    # loop (a cookbook recipe's main thread), its __del__ closes the idle connection from
    # there, and the socket's recycled file descriptor can take a live request's reader
    # off the SDK's selector (that request then hangs for its 45 s timeout). Closing the
    # connection after this answer leaves that pool nothing to close.
    response.headers["Connection"] = "close"
    return response


async def dynamic_config(request: Request) -> Response:
    await parse(request, types.ClientConfigRequest)
    # Cancels are honoured (cancel_future), and a long refresh interval keeps idle
    # clients quiet.
    return ok(types.ClientDynamicConfigResponse(refresh_interval_sec=3600))


def _sessions(state: ServerState) -> SessionStore:
    sessions: SessionStore = state.service._context.store.sessions
    return sessions


async def create_session(request: Request) -> Response:
    req = await parse(request, types.CreateSessionRequest)
    state = state_of(request)
    session = state.new_session()
    _sessions(state).ensure(
        session.session_id,
        state.backend,
        user_metadata={str(k): str(v) for k, v in req.user_metadata.items()}
        if req.user_metadata
        else None,
        project_id=req.project_id,
        display_name=req.display_name,
        pid=os.getpid(),  # alive while the server is
    )
    return ok(
        types.CreateSessionResponse(
            session_id=session.session_id,
            info_message=None,
        )
    )


async def session_heartbeat(request: Request) -> Response:
    req = await parse(request, types.SessionHeartbeatRequest)
    session = state_of(request).sessions.get(req.session_id)
    if session is not None and session.finished:
        # 410 tells the SDK's heartbeat loop to stop.
        return error(410, f"session {req.session_id} has finished")
    if session is not None:
        import time

        session.last_heartbeat = time.time()
    return ok(types.SessionHeartbeatResponse())


async def finish_session(request: Request) -> Response:
    state = state_of(request)
    session_id = request.path_params["session_id"]
    session = state.sessions.get(session_id)
    if session is not None:
        session.finished = True
    try:
        body = await read_json(request)
        status = body["reason"]["type"]
        detail = body.get("detail")
    except (HTTPError, KeyError, TypeError, AttributeError):
        status, detail = "success", None
    if status in ("success", "errored", "interrupted"):
        _sessions(state).finish(session_id, status, detail)
    return ok(None)


# --- filing runs and samplers under the SDK's session ---------------------------------------


def in_session(handler: Handler) -> Handler:
    """``handler`` (a model or sampler endpoint), with what it creates filed under the
    session named in the request: a training run (``create_model``, a create-via-load
    ``load_weights``) or a sampler (``create_sampling_session``, an unnamed
    ``save_weights_for_sampler``)."""

    async def filed(request: Request) -> Response:
        try:
            body: dict[str, Any] = json.loads(await request.body() or b"{}")  # cached
        except ValueError:
            body = {}
        response = await handler(request)
        if response.status_code == 200 and isinstance(body, dict):
            try:
                _file(state_of(request), body, json.loads(bytes(response.body)))
            except Exception:  # bookkeeping must never fail the request itself
                logger.exception("could not file %s under its session", request.url.path)
        return response

    return filed


def _file(state: ServerState, body: dict[str, Any], answer: dict[str, Any]) -> None:
    store, backend = state.service._context.store, state.backend
    if "sampling_session_id" in answer:  # create_sampling_session answers at once
        model_path = body.get("model_path")
        base = body.get("base_model")
        if base is None and model_path:
            base = store.record(model_path, include_expired=True).base_model
        store.sessions.add_sampler(
            body["session_id"], backend, answer["sampling_session_id"], base or "", model_path
        )
        return
    entry = state.futures.get(answer.get("request_id", ""))
    if entry is None:
        return

    def link(result: Any) -> Any:
        try:
            _link(state, body, result)
        except Exception:
            logger.exception("could not file a %s result under its session", entry.kind)
        return result

    entry.future = chain(entry.future, link)


def _link(state: ServerState, body: dict[str, Any], result: Any) -> None:
    store, backend = state.service._context.store, state.backend
    sampler_id = getattr(result, "sampling_session_id", None)
    if sampler_id is not None:  # an unnamed save: a sampler in the model's session
        slot = state.models.get(body.get("model_id", ""))
        if slot is None:
            return
        run = store.get_run(slot.client.model_id)
        if run.session_id is not None:
            store.sessions.add_sampler(run.session_id, backend, sampler_id, run.base_model, None)
        return
    session_id = body.get("session_id")
    model_id = getattr(result, "model_id", None)
    if session_id is None or model_id is None or body.get("model_id") is not None:
        return  # a load into an existing model creates no run
    slot = state.models.get(model_id)
    run_id = str(slot.client.model_id) if slot is not None else model_id
    store.sessions.ensure(session_id, backend)
    store.set_run_session(run_id, session_id)


async def telemetry(request: Request) -> Response:
    # Accepted and dropped: nothing leaves the machine.
    await request.body()
    return ok(types.TelemetryResponse(status="accepted"))


async def capabilities(request: Request) -> Response:
    from tinkerkit.backends.service_client import capabilities

    return ok(capabilities(state_of(request).service._context))


async def unsupported(request: Request) -> Response:
    """Any endpoint not implemented: 404 naming it, as the service answers unknown routes."""
    backend = state_of(request).backend
    return error(
        404,
        f"{request.method} {request.url.path} is not supported by tinkerkit serve "
        f"(offline {backend!r} backend); see docs/serve.md for what is.",
    )
