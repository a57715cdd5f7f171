"""The ASGI app: tinker 0.38's endpoints routed to tinkerkit's service.

One app serves any number of ``Service``s, one per API key (``Host``): ``tinkerkit
serve`` holds one, ``tk.connect`` adds one per call to the process's own server
(``server/inprocess.py``), so each connection keeps its own latency, faults and models.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinkerkit.errors import ServiceStatusError
from tinkerkit.server import routes_rest as rest
from tinkerkit.server import routes_sampling as sampling
from tinkerkit.server import routes_service as service
from tinkerkit.server import routes_training as training
from tinkerkit.server.auth import AuthMiddleware, Host, UrlSigner
from tinkerkit.server.body import BodyLimit
from tinkerkit.server.responses import HTTPError, ServerStopping, error

logger = logging.getLogger("tinkerkit.server")
_V1 = "/api/v1"
_CKPT = "/training_runs/{run_id}/checkpoints/{kind}/{name}"

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
    ("POST", "/create_model", training.create_model),
    ("POST", "/get_info", training.get_info),
    ("POST", "/save_weights", training.save_weights),
    ("POST", "/load_weights", training.load_weights),
    ("POST", "/save_weights_for_sampler", training.save_weights_for_sampler),
    ("POST", "/save_weights_external", training.save_weights_external),
    ("POST", "/unload_model", training.unload_model),
    ("POST", "/create_sampling_session", sampling.create_sampling_session),
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

_TOKEN = re.compile(rb"^/files/[^/]+/")


def _logged_path(scope: Scope) -> str:
    """The path as sent (percent-encoded, so a ``%0A`` cannot forge a log line), the
    signature of a download URL masked, cut at 200 characters."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "backslashreplace")
    raw = _TOKEN.sub(b"/files/***/", raw.split(b"?", 1)[0])
    text = raw.decode("ascii", "backslashreplace")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= 200 else text[:200] + "..."


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
                ms = (time.perf_counter() - start) * 1000
                method = str(scope.get("method", ""))[:16]
                logger.info("%s %s %s %.1fms", method, _logged_path(scope), status, ms)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error(exc.status, exc.message)


async def _not_routed(request: Request, exc: Exception) -> Response:
    # What no route takes (a path with a decoded newline matches not even the catch-all;
    # a method no route has): the service's shape, not Starlette's plain text.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return await service.unsupported(request)
    return error(exc.status_code, f"{request.method} {exc.detail}")


async def _status_error(request: Request, exc: Exception) -> Response:
    # A refusal raised before any work (a request over a limit, backends/limits.py):
    # its own status, so the SDK raises the class the service's answer gives.
    assert isinstance(exc, ServiceStatusError)
    return error(exc.status, str(exc))


async def _disconnected(request: Request, exc: Exception) -> Response:
    # The client went away mid-body (closed, killed, timed out): nobody reads the answer.
    logger.info("client disconnected during %s %s", request.method, _logged_path(request.scope))
    return error(499, "the client closed the connection before its request was read")


async def _stopping(request: Request, exc: Exception) -> Response:
    # The server stopped while the body was still arriving (runner.UvicornServer).
    return error(503, f"{exc}: send the request again once a server is running")


async def _crash(request: Request, exc: Exception) -> Response:
    # A bug in the server, not a bad request: 500 (the SDK retries those), message kept.
    logger.exception("unhandled error in %s %s", request.method, _logged_path(request.scope))
    return error(500, f"{type(exc).__name__}: {exc}")


def create_app(host: Host) -> Starlette:
    """The ASGI app serving every ``Service`` of ``host`` (one per API key).

    Example:
        >>> host = Host()
        >>> key = host.add(Service(engine_factory("mock")))
        >>> uvicorn.run(create_app(host), host="127.0.0.1", port=8000)  # doctest: +SKIP
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
            Middleware(AuthMiddleware, host=host),
            Middleware(BodyLimit),
        ],
        exception_handlers={
            HTTPError: _http_error,
            StarletteHTTPException: _not_routed,
            ServiceStatusError: _status_error,
            ClientDisconnect: _disconnected,
            ServerStopping: _stopping,
            RecursionError: _deep,
            Exception: _crash,
        },
    )
    app.state.host = host
    app.state.signer = UrlSigner()
    return app


async def _deep(request: Request, exc: Exception) -> Response:
    return error(400, "invalid request body: nested too deeply")
