"""Session-level endpoints: health, client config, sessions, telemetry, capabilities."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from tinker import types

from tinkerkit.server.responses import error, ok, parse, state_of


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
    return ok(client_config())


async def dynamic_config(request: Request) -> Response:
    await parse(request, types.ClientConfigRequest)
    # Cancels are honoured (cancel_future), and a long refresh interval keeps idle
    # clients quiet.
    return ok(types.ClientDynamicConfigResponse(refresh_interval_sec=3600))


async def create_session(request: Request) -> Response:
    await parse(request, types.CreateSessionRequest)
    session = state_of(request).new_session()
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
    session = state_of(request).sessions.get(request.path_params["session_id"])
    if session is not None:
        session.finished = True
    return ok(None)


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
