"""Session-level endpoints: health, client config, sessions, telemetry, capabilities.

Sessions the SDK creates (``POST /create_session``) are recorded in the offline store,
with their metadata and finish reason, so ``RestClient.list_sessions``/``get_session``
list them; the runs and samplers the SDK creates in a session are filed under it.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from tinker import types

from tinkerkit.backends.sessions import valid_session_id
from tinkerkit.server.responses import HTTPError, error, ok, parse, read_json, service_of

logger = logging.getLogger("tinkerkit.server")


def client_config() -> types.ClientConfigResponse:
    """The feature flags this server hands the SDK.

    JWT exchange off (the local key goes on every request); httpx's own transport
    (no pyqwest); uncompressed protobuf forward_backward bodies, a big one's chunks sent
    in turn (so a model's requests always arrive in ``seq_id`` order); per-request future
    polling (no session poller); custom losses run client-side (the SDK's own tracer).

    Example:
        >>> client_config().pjwt_auth_enabled
        False
    """
    return types.ClientConfigResponse(
        pjwt_auth_enabled=False,
        credential_default_source="api_key",
        use_pyqwest_transport=False,
        proto_compress_fwdbwd=False,
        parallel_fwdbwd_chunks=False,
        sample_use_retrieve_futures=False,
        custom_loss_server_side=False,
        sample_join_sampling_session=True,
    )


def check_session_id(session_id: str) -> str:
    """``session_id`` if it could be one of this server's (400 otherwise: a NUL byte or
    5,000 characters must not reach the file system)."""
    if not valid_session_id(session_id):
        raise HTTPError(400, f"invalid session id {session_id[:80]!r}")
    return session_id


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


async def create_session(request: Request) -> Response:
    req = await parse(request, types.CreateSessionRequest)
    metadata = req.user_metadata
    session = service_of(request).new_session(
        {str(k): str(v) for k, v in metadata.items()} if metadata else None,
        req.project_id,
        req.display_name,
    )
    return ok(types.CreateSessionResponse(session_id=session.session_id, info_message=None))


async def session_heartbeat(request: Request) -> Response:
    req = await parse(request, types.SessionHeartbeatRequest)
    session = service_of(request).sessions.get(req.session_id)
    if session is not None and session.finished:
        # 410 tells the SDK's heartbeat loop to stop.
        return error(410, f"session {req.session_id} has finished")
    if session is not None:
        session.last_heartbeat = time.time()
    return ok(types.SessionHeartbeatResponse())


async def finish_session(request: Request) -> Response:
    service = service_of(request)
    session_id = check_session_id(request.path_params["session_id"])
    try:
        body = await read_json(request)
        status = body["reason"]["type"]
        detail = body.get("detail")
    except (HTTPError, KeyError, TypeError, AttributeError):
        status, detail = "success", None
    service.finish_session(session_id, status, detail)
    return ok(None)


async def telemetry(request: Request) -> Response:
    # Accepted and dropped: nothing leaves the machine.
    await request.body()
    return ok(types.TelemetryResponse(status="accepted"))


async def capabilities(request: Request) -> Response:
    return ok(service_of(request).capabilities())


async def unsupported(request: Request) -> Response:
    """Any endpoint not implemented: 404 naming it, as the service answers unknown routes."""
    return error(
        404,
        f"{request.method} {request.scope['path'][:200]!r} is not supported by tinkerkit's "
        "service; see docs/serve.md for what is.",
    )
