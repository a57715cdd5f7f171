"""REST endpoints: runs, checkpoints, sessions, storage, and signed download URLs.

Each endpoint is one call on the offline ``RestClient`` (``state.rest``); its errors
answer with the HTTP status of their SDK class (``responses.status_for``), so the SDK
raises what the offline client raises. Paths, verbs, bodies and query parameters are
tinker 0.38's (``tinker/lib/public_interfaces/rest_client.py``, ``admin_client.py``).

Download URLs point back at this server (``/files/<signature>/<run>/<kind>/<name>/<file>``,
``/files/<signature>/sessions/<id>/trace.json``) so a client on another machine that can
reach the server can fetch them; the signature, not the API key, authorises the
download, as with the service's signed URLs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from tinker import types
from tinker.lib.experimental import ExperimentalWarning

from tinkerkit.server.responses import (
    HTTPError,
    ok,
    parse,
    read_json,
    result_of,
    state_of,
    status_for,
)

URL_LIFETIME_S = 3600


def _run_id(request: Request) -> str:
    """Store run id for a path's run: a create-via-load model is addressed by its wire id."""
    run_id: str = request.path_params["run_id"]
    slot = state_of(request).models.get(run_id)
    return str(slot.client.model_id) if slot is not None else run_id


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


async def _answer(call: Callable[[], Any], what: str) -> Any:
    """The result of one offline REST call; a refusal at the call or in its future
    answers with the status of its SDK class."""
    try:
        future = call().future()
    except Exception as exc:
        raise HTTPError(status_for(exc), str(exc)) from exc
    return await result_of(future, what)


# --- training runs and checkpoints ---------------------------------------------------------


async def list_training_runs(request: Request) -> Response:
    rest = state_of(request).rest
    limit, offset = _int(request, "limit", 20), _int(request, "offset", 0)
    project_id = request.query_params.get("project_id")
    return ok(
        await _answer(
            lambda: rest.list_training_runs(limit, offset, project_id=project_id), "listing"
        )
    )


async def get_training_run(request: Request) -> Response:
    rest = state_of(request).rest
    run_id = _run_id(request)
    return ok(await _answer(lambda: rest.get_training_run(run_id), "training run"))


async def list_checkpoints(request: Request) -> Response:
    rest = state_of(request).rest
    run_id = _run_id(request)
    return ok(await _answer(lambda: rest.list_checkpoints(run_id), "listing"))


async def list_user_checkpoints(request: Request) -> Response:
    rest = state_of(request).rest
    limit, offset = _int(request, "limit", 100), _int(request, "offset", 0)
    return ok(await _answer(lambda: rest.list_user_checkpoints(limit, offset), "listing"))


async def delete_checkpoint(request: Request) -> Response:
    rest = state_of(request).rest
    p = request.path_params
    run_id, checkpoint_id = _run_id(request), f"{p['kind']}/{p['name']}"
    await _answer(lambda: rest.delete_checkpoint(run_id, checkpoint_id), "delete")
    return ok(None)


async def weights_info(request: Request) -> Response:
    rest = state_of(request).rest
    path = (await _json(request)).get("tinker_path")
    if not isinstance(path, str):
        raise HTTPError(400, "weights_info needs a tinker_path")
    return ok(await _answer(lambda: rest.get_weights_info_by_tinker_path(path), "weights info"))


async def set_ttl(request: Request) -> Response:
    rest = state_of(request).rest
    path, body = _tinker_path(request), await _json(request)
    if "ttl_seconds" not in body:
        raise HTTPError(400, "the body needs ttl_seconds (an integer, or null for no expiry)")
    ttl = body["ttl_seconds"]
    await _answer(lambda: rest.set_checkpoint_ttl_from_tinker_path(path, ttl), "set ttl")
    return ok(None)


async def publish(request: Request) -> Response:
    rest = state_of(request).rest
    path = _tinker_path(request)
    await _answer(lambda: rest.publish_checkpoint_from_tinker_path(path), "publish")
    return ok(None)


async def unpublish(request: Request) -> Response:
    rest = state_of(request).rest
    path = _tinker_path(request)
    await _answer(lambda: rest.unpublish_checkpoint_from_tinker_path(path), "unpublish")
    return ok(None)


async def copy_weights(request: Request) -> Response:
    """``POST /copy_weights``; a repeated ``X-Idempotency-Key`` gets the first copy's path
    (the SDK reuses one key across its retries, to avoid duplicate copies)."""
    rest = state_of(request).rest
    req = await parse(request, types.CopyWeightsRequest)
    key = request.headers.get("x-idempotency-key")
    done: dict[str, str] = request.app.state.copies
    if key is not None and key in done:
        return ok(types.CopyWeightsResponse(tinker_path=done[key]))
    if not req.destination_project_id:
        raise HTTPError(
            400, "copy_weights needs a destination_project_id (a session_id is not supported)"
        )
    project = req.destination_project_id
    path: str = await _answer(
        lambda: rest.copy_weights(req.source_path, project, ttl_seconds=req.ttl_seconds), "copy"
    )
    if key is not None:
        done[key] = path
    return ok(types.CopyWeightsResponse(tinker_path=path))


async def _local_files(request: Request, tinker_path: str) -> dict[str, Path]:
    rest = state_of(request).rest
    urls: types.ExternalWeightsUrlsResponse = await _answer(
        lambda: rest.get_external_weights_urls(tinker_path), "external weights"
    )
    # The offline client answers with file:// URLs; the paths behind them are served here.
    return {name: _file_of(url) for name, url in urls.urls.items()}


def _file_of(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _signed(request: Request, rel: str) -> tuple[str, datetime]:
    token, expires = request.app.state.signer.sign(rel, URL_LIFETIME_S)
    base = str(request.base_url).rstrip("/")
    return f"{base}/files/{token}/{rel}", datetime.fromtimestamp(expires, UTC)


async def external_weights_urls(request: Request) -> Response:
    tinker_path = _tinker_path(request)
    files = await _local_files(request, tinker_path)
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
    files = await _local_files(request, f"tinker://{p['run_id']}/{p['kind']}/{p['name']}")
    path = files.get(p["file"])
    if path is None or not path.is_file():
        raise HTTPError(404, f"No file {p['file']!r} in that checkpoint.")
    return FileResponse(path)


# --- sessions, samplers, identity -------------------------------------------------------


async def list_sessions(request: Request) -> Response:
    rest = state_of(request).rest
    limit, offset = _int(request, "limit", 20), _int(request, "offset", 0)
    return ok(await _answer(lambda: rest.list_sessions(limit, offset), "listing"))


async def get_session(request: Request) -> Response:
    rest = state_of(request).rest
    session_id = request.path_params["session_id"]
    return ok(await _answer(lambda: rest.get_session(session_id), "session"))


async def assign_session_project(request: Request) -> Response:
    rest = state_of(request).rest
    session_id = request.path_params["session_id"]
    project_id = (await _json(request)).get("project_id")
    if not isinstance(project_id, str) or not project_id:
        raise HTTPError(400, "assign_session_project needs a project_id")
    await _answer(lambda: rest.assign_session_project(session_id, project_id), "assign project")
    return ok(None)


async def search_sessions(request: Request) -> Response:
    rest = state_of(request).rest
    req = await parse(request, types.SessionSearchRequest)
    with warnings.catch_warnings():  # experimental for the SDK's caller, not for the server
        warnings.simplefilter("ignore", ExperimentalWarning)
        return ok(await _answer(lambda: rest.search_sessions(req), "search"))


async def trace_export(request: Request) -> Response:
    """``GET /sessions/{id}/trace_export``: ready at once, with a signed URL of the trace."""
    rest = state_of(request).rest
    session_id = request.path_params["session_id"]
    await _answer(lambda: rest.export_session_trace(session_id), "trace export")
    url, _ = _signed(request, f"sessions/{session_id}/trace.json")
    return JSONResponse({"status": "ready", "url": url})


async def download_trace(request: Request) -> Response:
    p = request.path_params
    if not request.app.state.signer.verify(f"sessions/{p['session_id']}/{p['file']}", p["token"]):
        raise HTTPError(403, "This download URL is invalid or has expired; ask for a new one.")
    rest = state_of(request).rest
    url: str = await _answer(lambda: rest.export_session_trace(p["session_id"]), "trace export")
    return FileResponse(_file_of(url), media_type="application/json")


# --- admin: audit log, billing, storage (AdminClient and RestClient's deprecated ones) -----


async def audit_log(request: Request) -> Response:
    rest = state_of(request).rest
    return ok(await _answer(rest._audit_log, "audit log"))


async def billing_usage(request: Request) -> Response:
    rest = state_of(request).rest
    q = request.query_params
    start, end = q.get("starting_on"), q.get("ending_before")
    if start is None or end is None:
        raise HTTPError(400, "billing usage needs starting_on and ending_before")
    return ok(await _answer(lambda: rest._billing_usage(start, end), "billing usage"))


async def storage_usage(request: Request) -> Response:
    rest = state_of(request).rest
    project_id = request.query_params.get("project_id")
    return ok(await _answer(lambda: rest._storage_usage(project_id), "storage usage"))
