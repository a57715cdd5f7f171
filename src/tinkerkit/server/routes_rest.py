"""REST endpoints: runs, checkpoints, sessions, storage, and signed download URLs.

Each endpoint is one call on the checkpoint store (``backends/rest_runs.py``,
``backends/rest_sessions.py``), run off the event loop; its errors answer with the HTTP
status of their SDK class (``responses.status_for``), so the SDK raises the class the
service's answer would give. Paths, verbs, bodies and query parameters are tinker
0.38's (``tinker/lib/public_interfaces/rest_client.py``, ``admin_client.py``).

Download URLs point back at this server (``/files/<signature>/<run>/<kind>/<name>/<file>``,
``/files/<signature>/sessions/<id>/trace.json``) so a client on another machine that can
reach the server can fetch them; the signature, not the API key, authorises the
download, as with the service's signed URLs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from tinker import types

from tinkerkit.backends import rest_runs, rest_sessions
from tinkerkit.backends.store import CheckpointStore, parse_tinker_path, to_checkpoint
from tinkerkit.errors import CheckpointNotFoundError, InvalidTinkerPathError
from tinkerkit.server.responses import (
    HTTPError,
    ok,
    parse,
    read_json,
    service_of,
    status_for,
)
from tinkerkit.server.routes_service import check_session_id

URL_LIFETIME_S = 3600


def _run_id(request: Request) -> str:
    """Store run id for a path's run: a create-via-load model is addressed by its wire id."""
    return service_of(request).run_id(request.path_params["run_id"])


def _tinker_path(request: Request) -> str:
    p = request.path_params
    return f"tinker://{_run_id(request)}/{p['kind']}/{p['name']}"


def _int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    try:
        return default if value is None else int(value)
    except ValueError:
        raise HTTPError(400, f"query parameter {name} must be an integer, got {value!r}") from None


async def _json(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    return body


async def _answer(call: Callable[[], Any]) -> Any:
    """The result of one store call, off the event loop; a refusal answers with the
    status of its SDK class."""
    try:
        return await asyncio.to_thread(call)
    except HTTPError:
        raise
    except Exception as exc:
        raise HTTPError(status_for(exc), str(exc) or type(exc).__name__) from exc


def _store(request: Request) -> tuple[CheckpointStore, str]:
    service = service_of(request)
    return service.store, service.backend


# --- training runs and checkpoints ---------------------------------------------------------


async def list_training_runs(request: Request) -> Response:
    store, backend = _store(request)
    limit, offset = _int(request, "limit", 20), _int(request, "offset", 0)
    project_id = request.query_params.get("project_id")
    return ok(
        await _answer(
            lambda: rest_runs.list_training_runs(store, backend, limit, offset, project_id)
        )
    )


async def get_training_run(request: Request) -> Response:
    store, _ = _store(request)
    run_id = _run_id(request)
    return ok(await _answer(lambda: rest_runs.training_run(store, store.get_run(run_id))))


async def list_checkpoints(request: Request) -> Response:
    store, _ = _store(request)
    run_id = _run_id(request)
    return ok(
        await _answer(
            lambda: types.CheckpointsListResponse(
                checkpoints=[to_checkpoint(r) for r in store.list_checkpoints(run_id)]
            )
        )
    )


async def list_user_checkpoints(request: Request) -> Response:
    store, backend = _store(request)
    limit, offset = _int(request, "limit", 100), _int(request, "offset", 0)
    return ok(await _answer(lambda: rest_runs.list_user_checkpoints(store, backend, limit, offset)))


def _delete(store: CheckpointStore, path: str) -> None:
    try:
        parse_tinker_path(path)
    except InvalidTinkerPathError:
        # Not a checkpoint id at all: the run has no such checkpoint (404).
        raise CheckpointNotFoundError(path, str(store.root)) from None
    rest_runs.live_record(store, path)
    store.delete(path)


async def delete_checkpoint(request: Request) -> Response:
    store, _ = _store(request)
    path = _tinker_path(request)
    await _answer(lambda: _delete(store, path))
    return ok(None)


async def weights_info(request: Request) -> Response:
    store, _ = _store(request)
    path = (await _json(request)).get("tinker_path")
    if not isinstance(path, str):
        raise HTTPError(400, "weights_info needs a tinker_path")
    return ok(await _answer(lambda: rest_runs.weights_info(store, path)))


async def set_ttl(request: Request) -> Response:
    store, _ = _store(request)
    path, body = _tinker_path(request), await _json(request)
    if "ttl_seconds" not in body:
        raise HTTPError(400, "the body needs ttl_seconds (an integer, or null for no expiry)")
    ttl = body["ttl_seconds"]
    await _answer(lambda: rest_runs.set_ttl(store, path, ttl))
    return ok(None)


async def publish(request: Request) -> Response:
    store, _ = _store(request)
    path = _tinker_path(request)
    await _answer(lambda: rest_runs.set_public(store, path, True))
    return ok(None)


async def unpublish(request: Request) -> Response:
    store, _ = _store(request)
    path = _tinker_path(request)
    await _answer(lambda: rest_runs.set_public(store, path, False))
    return ok(None)


async def copy_weights(request: Request) -> Response:
    """``POST /copy_weights``; a repeated ``X-Idempotency-Key`` gets the first copy's path
    (the SDK reuses one key across its retries, to avoid duplicate copies)."""
    service = service_of(request)
    req = await parse(request, types.CopyWeightsRequest)
    key = request.headers.get("x-idempotency-key")
    done = service.copies
    if key is not None and key in done:
        return ok(types.CopyWeightsResponse(tinker_path=done[key]))
    if not req.destination_project_id:
        raise HTTPError(
            400, "copy_weights needs a destination_project_id (a session_id is not supported)"
        )
    project = req.destination_project_id
    path: str = await _answer(
        lambda: rest_runs.copy_weights(service.store, req.source_path, project, req.ttl_seconds)
    )
    if key is not None:
        done[key] = path
    return ok(types.CopyWeightsResponse(tinker_path=path))


def _files(store: CheckpointStore, tinker_path: str) -> dict[str, Path]:
    try:
        parse_tinker_path(tinker_path, ("external_weights",))
    except InvalidTinkerPathError:
        raise HTTPError(
            400,
            "external weights URLs are for external weights checkpoints "
            f"(tinker://<training_run_id>/external_weights/<name>), got {tinker_path!r}",
        ) from None
    rest_runs.live_record(store, tinker_path)
    return store.files(tinker_path)


def _signed(request: Request, rel: str) -> tuple[str, datetime]:
    token, expires = request.app.state.signer.sign(rel, URL_LIFETIME_S)
    base = str(request.base_url).rstrip("/")
    return f"{base}/files/{token}/{rel}", datetime.fromtimestamp(expires, UTC)


async def external_weights_urls(request: Request) -> Response:
    store, _ = _store(request)
    tinker_path = _tinker_path(request)
    files = await _answer(lambda: _files(store, tinker_path))
    prefix = tinker_path[len("tinker://") :]
    urls, expires = {}, datetime.now(UTC)
    for name in files:
        urls[name], expires = _signed(request, f"{prefix}/{name}")
    return ok(types.ExternalWeightsUrlsResponse(urls=urls, expires=expires))


async def download(request: Request) -> Response:
    p = request.path_params
    rel = f"{p['run_id']}/{p['kind']}/{p['name']}/{p['file']}"
    if not request.app.state.signer.verify(rel, p["token"]):
        raise HTTPError(403, "This download URL is invalid or has expired; ask for a new one.")
    # No API key here (the signature is the credential): the store of this process's home.
    store = CheckpointStore()
    path = f"tinker://{p['run_id']}/{p['kind']}/{p['name']}"
    files = await _answer(lambda: _files(store, path))
    file = files.get(p["file"])
    if file is None or not file.is_file():
        raise HTTPError(404, f"No file {p['file']!r} in that checkpoint.")
    return FileResponse(file)


# --- sessions, samplers, identity -------------------------------------------------------


async def list_sessions(request: Request) -> Response:
    store, backend = _store(request)
    limit, offset = _int(request, "limit", 20), _int(request, "offset", 0)
    return ok(await _answer(lambda: rest_sessions.list_sessions(store, backend, limit, offset)))


async def get_session(request: Request) -> Response:
    store, backend = _store(request)
    session_id = check_session_id(request.path_params["session_id"])
    return ok(await _answer(lambda: rest_sessions.get_session(store, backend, session_id)))


async def assign_session_project(request: Request) -> Response:
    store, backend = _store(request)
    session_id = check_session_id(request.path_params["session_id"])
    project_id = (await _json(request)).get("project_id")
    if not isinstance(project_id, str) or not project_id:
        raise HTTPError(400, "assign_session_project needs a project_id")
    await _answer(lambda: rest_sessions.assign_project(store, backend, session_id, project_id))
    return ok(None)


async def search_sessions(request: Request) -> Response:
    store, backend = _store(request)
    req = await parse(request, types.SessionSearchRequest)
    return ok(await _answer(lambda: rest_sessions.search_sessions(store, backend, req)))


async def trace_export(request: Request) -> Response:
    """``GET /sessions/{id}/trace_export``: ready at once, with a signed URL of the trace."""
    store, backend = _store(request)
    session_id = check_session_id(request.path_params["session_id"])
    await _answer(lambda: rest_sessions.export_trace(store, backend, session_id))
    url, _ = _signed(request, f"sessions/{session_id}/trace.json")
    return JSONResponse({"status": "ready", "url": url})


async def download_trace(request: Request) -> Response:
    p = request.path_params
    session_id = check_session_id(p["session_id"])
    if not request.app.state.signer.verify(f"sessions/{session_id}/{p['file']}", p["token"]):
        raise HTTPError(403, "This download URL is invalid or has expired; ask for a new one.")
    store = CheckpointStore()
    session = store.sessions.get(session_id)
    if session is None:
        raise HTTPError(404, f"No session {session_id!r}.")
    url: str = await _answer(lambda: rest_sessions.export_trace(store, session.backend, session_id))
    return FileResponse(Path(url.removeprefix("file://")), media_type="application/json")


# --- admin: audit log, billing, storage (AdminClient and RestClient's deprecated ones) -----


async def audit_log(request: Request) -> Response:
    # Offline keeps no audit log: one user, nothing to audit.
    return ok(types.AuditLogResponse(entries=[]))


async def billing_usage(request: Request) -> Response:
    q = request.query_params
    start, end = q.get("starting_on"), q.get("ending_before")
    if start is None or end is None:
        raise HTTPError(400, "billing usage needs starting_on and ending_before")
    # Offline nothing is billed.
    return ok(types.BillingUsageResponse(data=[]))


async def storage_usage(request: Request) -> Response:
    store, backend = _store(request)
    project_id = request.query_params.get("project_id")
    return ok(await _answer(lambda: rest_runs.storage_usage(store, backend, project_id)))
