"""REST endpoints: training runs, checkpoints, deletion, external-weights download URLs.

Download URLs point back at this server (``/files/<signature>/<run>/<kind>/<name>/<file>``)
so a client on another machine that can reach the server can fetch them; the
signature, not the API key, authorises the download, as with the service's signed URLs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from tinker import types

from tinkerkit.server.responses import HTTPError, ok, result_of, state_of

URL_LIFETIME_S = 3600


def _run_id(request: Request) -> str:
    """Store run id for a path's run: a create-via-load model is addressed by its wire id."""
    run_id: str = request.path_params["run_id"]
    slot = state_of(request).models.get(run_id)
    return str(slot.client.model_id) if slot is not None else run_id


def _tinker_path(request: Request) -> str:
    p = request.path_params
    return f"tinker://{_run_id(request)}/{p['kind']}/{p['name']}"


async def list_training_runs(request: Request) -> Response:
    q = request.query_params
    limit, offset = int(q.get("limit", 20)), int(q.get("offset", 0))
    rest = state_of(request).rest
    return ok(await result_of(rest.list_training_runs(limit, offset).future(), "listing"))


async def get_training_run(request: Request) -> Response:
    rest = state_of(request).rest
    return ok(await result_of(rest.get_training_run(_run_id(request)).future(), "training run"))


async def list_checkpoints(request: Request) -> Response:
    rest = state_of(request).rest
    return ok(await result_of(rest.list_checkpoints(_run_id(request)).future(), "listing"))


async def delete_checkpoint(request: Request) -> Response:
    rest = state_of(request).rest
    try:
        future = rest.delete_checkpoint_from_tinker_path(_tinker_path(request)).future()
    except Exception as exc:
        raise HTTPError(400, str(exc)) from exc
    await result_of(future, "delete")
    return ok(None)


async def _local_files(request: Request, tinker_path: str) -> dict[str, Path]:
    rest = state_of(request).rest
    try:
        future = rest.get_external_weights_urls(tinker_path).future()
    except Exception as exc:
        raise HTTPError(400, str(exc)) from exc
    urls: types.ExternalWeightsUrlsResponse = await result_of(future, "external weights")
    # The offline client answers with file:// URLs; the paths behind them are served here.
    return {name: Path(unquote(urlparse(url).path)) for name, url in urls.urls.items()}


async def external_weights_urls(request: Request) -> Response:
    tinker_path = _tinker_path(request)
    files = await _local_files(request, tinker_path)
    signer = request.app.state.signer
    base = str(request.base_url).rstrip("/")
    prefix = tinker_path[len("tinker://") :]
    urls, expires = {}, 0
    for name in files:
        token, expires = signer.sign(f"{prefix}/{name}", URL_LIFETIME_S)
        urls[name] = f"{base}/files/{token}/{prefix}/{name}"
    from datetime import UTC, datetime

    return ok(
        types.ExternalWeightsUrlsResponse(urls=urls, expires=datetime.fromtimestamp(expires, UTC))
    )


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
