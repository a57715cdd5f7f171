"""The ASGI app: tinker 0.38's endpoints routed to tinkerkit's offline clients."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinkerkit.errors import ServiceStatusError
from tinkerkit.server import routes_rest as rest
from tinkerkit.server import routes_sampling as sampling
from tinkerkit.server import routes_service as service
from tinkerkit.server import routes_training as training
from tinkerkit.server.auth import AuthMiddleware, UrlSigner
from tinkerkit.server.body import BodyLimit
from tinkerkit.server.responses import HTTPError
from tinkerkit.server.state import ServerState

if TYPE_CHECKING:
    from tinkerkit.backends.service_client import ServiceClient

logger = logging.getLogger("tinkerkit.server")
_V1 = "/api/v1"
_CKPT = "/training_runs/{run_id}/checkpoints/{kind}/{name}"

# The model and sampler endpoints that create runs or samplers are wrapped by
# ``service.in_session``, which files what they create under the SDK's session.
# The router tries routes in order, so the endpoints every step calls come first.
ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/asample", sampling.asample),
    ("POST", "/retrieve_future", sampling.retrieve_future),
    ("POST", "/forward_backward", training.forward_backward),
    ("POST", "/optim_step", training.optim_step),
    ("GET", "/healthz", service.healthz),
    ("POST", "/client/config", service.config),
    ("POST", "/client/dynamic_config", service.dynamic_config),
    ("POST", "/create_session", service.create_session),
    ("POST", "/session_heartbeat", service.session_heartbeat),
    ("POST", "/sessions/{session_id}/finish", service.finish_session),
    ("POST", "/telemetry", service.telemetry),
    ("GET", "/get_server_capabilities", service.capabilities),
    ("POST", "/create_model", service.in_session(training.create_model)),
    ("POST", "/get_info", training.get_info),
    ("POST", "/save_weights", training.save_weights),
    ("POST", "/load_weights", service.in_session(training.load_weights)),
    ("POST", "/save_weights_for_sampler", service.in_session(training.save_weights_for_sampler)),
    ("POST", "/save_weights_external", training.save_weights_external),
    ("POST", "/unload_model", training.unload_model),
    ("POST", "/create_sampling_session", service.in_session(sampling.create_sampling_session)),
    ("POST", "/join_sampling_session", sampling.join_sampling_session),
    ("GET", "/samplers/{sampler_id}", sampling.get_sampler),
    ("POST", "/cancel_future", sampling.cancel_future),
    # RestClient: training runs and checkpoints
    ("GET", "/training_runs", rest.list_training_runs),
    ("GET", "/training_runs/{run_id}", rest.get_training_run),
    ("GET", "/training_runs/{run_id}/checkpoints", rest.list_checkpoints),
    ("DELETE", _CKPT, rest.delete_checkpoint),
    ("GET", _CKPT + "/external_weights_urls", rest.external_weights_urls),
    ("POST", _CKPT + "/publish", rest.publish),
    ("DELETE", _CKPT + "/publish", rest.unpublish),
    ("PUT", _CKPT + "/ttl", rest.set_ttl),
    ("GET", "/checkpoints", rest.list_user_checkpoints),
    ("POST", "/weights_info", rest.weights_info),
    ("POST", "/copy_weights", rest.copy_weights),
    # RestClient: sessions (search before {session_id}, so "search" is not taken for an id)
    ("GET", "/sessions", rest.list_sessions),
    ("POST", "/sessions/search", rest.search_sessions),
    ("GET", "/sessions/{session_id}", rest.get_session),
    ("PUT", "/sessions/{session_id}/project", rest.assign_session_project),
    ("GET", "/sessions/{session_id}/trace_export", rest.trace_export),
    # AdminClient (and RestClient's deprecated admin methods)
    ("GET", "/audit", rest.audit_log),
    ("GET", "/billing/usage/events", rest.billing_usage),
    ("GET", "/billing/usage/checkpoints/current", rest.storage_usage),
]

_TOKEN = re.compile(r"^/files/[^/]+/")


class RequestLog:
    """One line per request — method, path, status, time — never headers or query strings.

    Download paths carry a signature, so it is masked too; uvicorn's own access log
    (which prints the query string) is switched off by the runner.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            if logger.isEnabledFor(logging.INFO):
                path = _TOKEN.sub("/files/***/", scope.get("path", ""))
                ms = (time.perf_counter() - start) * 1000
                logger.info("%s %s %s %.1fms", scope.get("method"), path, status, ms)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def _status_error(request: Request, exc: Exception) -> Response:
    # A refusal raised before any work (a request over a limit, tinkerkit.backends.limits):
    # its own status, so the SDK raises the class the offline client raises.
    assert isinstance(exc, ServiceStatusError)
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


async def _crash(request: Request, exc: Exception) -> Response:
    # A bug in the server, not a bad request: 500 (the SDK retries those), message kept.
    logger.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=500)


def create_app(service_client: ServiceClient, api_key: str) -> Starlette:
    """The ASGI app serving ``service_client`` (an offline tinkerkit ``ServiceClient``).

    Example:
        >>> import tinkerkit as tk, uvicorn
        >>> app = create_app(tk.connect("mock"), api_key="tml-local-secret")
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    routes = [Route(_V1 + path, fn, methods=[method]) for method, path, fn in ROUTES]
    routes.append(Route("/files/{token}/sessions/{session_id}/{file}", rest.download_trace))
    routes.append(Route("/files/{token}/{run_id}/{kind}/{name}/{file}", rest.download))
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    routes.append(Route("/{rest:path}", service.unsupported, methods=methods))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestLog),
            Middleware(AuthMiddleware, api_key=api_key),
            Middleware(BodyLimit),
        ],
        exception_handlers={
            HTTPError: _http_error,
            ServiceStatusError: _status_error,
            Exception: _crash,
        },
    )
    app.state.tk = ServerState(service_client)
    app.state.signer = UrlSigner()
    app.state.copies = {}  # X-Idempotency-Key → path of the copy it made
    # The server's own offline session is plumbing; the SDK's sessions are the user's.
    service_client._context.store.sessions.ignore(service_client.session_id)
    return app
