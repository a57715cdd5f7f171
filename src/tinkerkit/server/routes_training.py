"""Model endpoints: create, info, forward/backward, optimizer step, save and load.

Each submitting endpoint turns the request into one call on its ``Model`` while holding
the model's turn (its ``seq_id``), so the model's worker sees the requests in the order
the SDK numbered them, and answers with a request id that ``/api/v1/retrieve_future``
resolves. A request refused before any work still takes its turn, so the model's next
request is never held up by it.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import tinker
from starlette.requests import Request
from starlette.responses import Response
from tinker import types

from tinkerkit.backends.engine import LoraConfig
from tinkerkit.backends.limits import check_lora_rank
from tinkerkit.errors import RequestLimitError
from tinkerkit.server.body import decompress_zstd
from tinkerkit.server.model import Model
from tinkerkit.server.responses import (
    PARSE_IN_THREAD_BYTES,
    HTTPError,
    ok,
    read_json,
    service_of,
    untyped_future,
    validate,
    wait_done,
)
from tinkerkit.server.service import ModelSlot, Service
from tinkerkit.server.state import chain, failed
from tinkerkit.server.wire import ForwardBackwardCall, parse_forward_backward

_PROTO = "application/x-protobuf"
# A load is answered once it ran, so a missing checkpoint can be a 404 (as on the service).
LOAD_TIMEOUT_S = 120.0


def _slot(service: Service, model_id: str | None) -> ModelSlot:
    slot = service.model(model_id)
    if slot is None:
        raise HTTPError(
            404,
            f"Model {model_id!r} not found on this tinkerkit server; create it with "
            "ServiceClient.create_lora_training_client(...) first.",
        )
    return slot


def _call(fn: Callable[[], Future[Any]]) -> Future[Any]:
    """A submission; a refusal (bad argument) becomes a failed future."""
    try:
        return fn()
    except Exception as exc:
        return failed(exc)


async def _model_request(request: Request, model: type[Any]) -> tuple[Any, ModelSlot | None]:
    """The body as ``model``; a body that does not fit is refused with its turn taken,
    when it names a known model and a ``seq_id``."""
    service = service_of(request)
    payload = await read_json(request, f"{model.__name__} body")
    try:
        return validate(model, payload), None
    except HTTPError:
        if isinstance(payload, dict):
            slot = service.model(
                payload.get("model_id") if isinstance(payload.get("model_id"), str) else None
            )
            seq_id = payload.get("seq_id")
            if slot is not None and isinstance(seq_id, int) and not isinstance(seq_id, bool):
                async with slot.sequencer.turn(seq_id):
                    pass
        raise


async def _submit(
    request: Request,
    model_id: str | None,
    seq_id: int | None,
    kind: str,
    fn: Callable[[Model], Future[Any]],
) -> Response:
    service = service_of(request)
    slot = _slot(service, model_id)
    model = slot.model
    async with slot.sequencer.turn(seq_id):
        future = _call(lambda: fn(model))
    entry = service.futures.add(future, kind, owner=model.model_id)
    return untyped_future(entry, model.model_id)


async def create_model(request: Request) -> Response:
    service = service_of(request)
    req = validate(types.CreateModelRequest, await read_json(request))
    lora = req.lora_config or types.LoraConfig(rank=32)
    check_lora_rank(lora.rank)  # a 400 before anything is allocated
    config = LoraConfig(lora.rank, lora.seed, lora.train_mlp, lora.train_attn, lora.train_unembed)
    future = service.create_model(
        req.base_model,
        config,
        req.user_metadata,
        req.optimizer_config,
        session_id=req.session_id,
    )
    done = chain(future, lambda m: types.CreateModelResponse(model_id=m.model_id))
    return untyped_future(service.futures.add(done, "create_model"))


async def get_info(request: Request) -> Response:
    req = validate(types.GetInfoRequest, await read_json(request))
    slot = _slot(service_of(request), req.model_id)
    # The first call saves the model's tokenizer as a folder (seconds for a large
    # vocabulary): off the event loop.
    return ok(await asyncio.to_thread(slot.model.info))


async def _decode_forward_backward(request: Request) -> ForwardBackwardCall:
    body = await request.body()
    if _PROTO not in request.headers.get("content-type", ""):
        # tinker 0.38 always sends protobuf here; JSON bodies are from older SDKs.
        raise HTTPError(415, "forward_backward takes an application/x-protobuf body (tinker 0.38)")
    zstd = request.headers.get("content-encoding", "").lower() == "zstd"
    try:
        if zstd or len(body) > PARSE_IN_THREAD_BYTES:
            return await asyncio.to_thread(_parse, body, zstd)
        return _parse(body, zstd)
    except RequestLimitError:
        raise  # decompressed past the limit: its own 400, naming it
    except Exception as exc:
        raise HTTPError(400, f"invalid forward_backward body: {exc}") from exc


def _parse(body: bytes, zstd: bool) -> ForwardBackwardCall:
    return parse_forward_backward(decompress_zstd(body) if zstd else body)


async def forward_backward(request: Request) -> Response:
    call = await _decode_forward_backward(request)
    if call.refused is not None:
        slot = _slot(service_of(request), call.model_id)
        async with slot.sequencer.turn(call.seq_id):
            raise call.refused
    backward = not call.forward_only
    return await _submit(
        request,
        call.model_id,
        call.seq_id,
        "forward_backward",
        lambda m: m.forward(call.data, call.loss_fn, call.loss_fn_config, backward=backward),
    )


def _finite_learning_rate(params: Any) -> None:
    lr = getattr(params, "learning_rate", None)
    if isinstance(lr, float) and not math.isfinite(lr):
        raise HTTPError(400, f"learning_rate must be a finite number, got {lr!r}")


async def optim_step(request: Request) -> Response:
    req, _ = await _model_request(request, types.OptimStepRequest)
    slot = _slot(service_of(request), req.model_id)
    try:
        _finite_learning_rate(req.optim_params or req.adam_params)
    except HTTPError:
        async with slot.sequencer.turn(req.seq_id):
            raise
    return await _submit(
        request,
        req.model_id,
        req.seq_id,
        "optim_step",
        lambda m: m.optim_step(req.optim_params or req.adam_params),
    )


async def save_weights(request: Request) -> Response:
    req, _ = await _model_request(request, types.SaveWeightsRequest)
    name = req.path or f"state-{uuid.uuid4().hex[:8]}"
    return await _submit(
        request,
        req.model_id,
        req.seq_id,
        "save_weights",
        lambda m: chain(
            m.save(
                "weights",
                name,
                ttl_seconds=req.ttl_seconds,
                overwrite=req.overwrite,
                user_metadata=req.user_metadata,
            ),
            lambda path: types.SaveWeightsResponse(path=path),
        ),
    )


async def save_weights_external(request: Request) -> Response:
    req, _ = await _model_request(request, types.SaveWeightsExternalRequest)
    return await _submit(
        request,
        req.model_id,
        req.seq_id,
        "save_weights_external",
        lambda m: chain(
            m.save(
                "external_weights",
                req.path,
                ttl_seconds=req.ttl_seconds,
                age_encryption_recipients=req.age_encryption_recipients,
            ),
            lambda path: types.SaveWeightsExternalResponse(path=path),
        ),
    )


async def save_weights_for_sampler(request: Request) -> Response:
    service = service_of(request)
    req, _ = await _model_request(request, types.SaveWeightsForSamplerRequest)
    if req.path is not None:
        name = req.path
        return await _submit(
            request,
            req.model_id,
            req.seq_id,
            "save_weights_for_sampler",
            lambda m: chain(
                m.save(
                    "sampler_weights",
                    name,
                    ttl_seconds=req.ttl_seconds,
                    user_metadata=req.user_metadata,
                ),
                lambda path: types.SaveWeightsForSamplerResponse(path=path),
            ),
        )
    # No name: an unnamed snapshot behind a new sampling session (save_weights_and_get_
    # sampling_client). The session id is known now; its sampler once the save ran.
    slot = _slot(service, req.model_id)
    model = slot.model
    session_id = (
        f"{model.model_id}:sample:{req.sampling_session_seq_id or 0}:{uuid.uuid4().hex[:6]}"
    )
    async with slot.sequencer.turn(req.seq_id):
        sampler = _call(lambda: model.sampler(req.kind or "snapshot"))
    service.add_sampler(session_id, sampler, model.run.session_id)
    done = chain(
        sampler,
        lambda _: types.SaveWeightsForSamplerResponseInternal(sampling_session_id=session_id),
    )
    return untyped_future(
        service.futures.add(done, "save_weights_for_sampler", owner=model.model_id),
        model.model_id,
    )


async def _answer_status_errors(future: Future[Any]) -> None:
    """Wait for a load and answer its HTTP-status failures (a missing checkpoint is a 404,
    a checkpoint of the wrong kind a 400) as HTTP errors, as the service does — so the SDK
    raises ``tinker.NotFoundError``/``BadRequestError``."""
    if not await wait_done(future, LOAD_TIMEOUT_S):
        return
    exc = None if future.cancelled() else future.exception()
    if isinstance(exc, tinker.APIStatusError):
        raise HTTPError(exc.status_code, str(exc))


async def load_weights(request: Request) -> Response:
    service = service_of(request)
    req, _ = await _model_request(request, types.LoadWeightsRequest)
    if req.model_id is not None:
        slot = _slot(service, req.model_id)
        model = slot.model
        async with slot.sequencer.turn(req.seq_id):
            loading = _call(lambda: model.load(req.path, with_optimizer=bool(req.optimizer)))
            await _answer_status_errors(loading)
        entry = service.futures.add(loading, "load_weights", owner=model.model_id)
        return untyped_future(entry, model.model_id)
    # Create-via-load: the SDK names the model itself, "<session>:train:<model_seq_id>".
    model_id = f"{req.session_id}:train:{req.model_seq_id}"
    future = service.load_model(
        req.path,
        with_optimizer=bool(req.optimizer),
        base_model=req.base_model,
        user_metadata=req.user_metadata,
        optimizer=None if req.optimizer else req.optimizer_config,
        session_id=req.session_id,
        model_id=model_id,
    )
    await _answer_status_errors(future)
    done = chain(future, lambda _: types.LoadWeightsResponse(path=req.path, model_id=model_id))
    return untyped_future(service.futures.add(done, "load_weights"), model_id)


async def unload_model(request: Request) -> Response:
    req = validate(types.UnloadModelRequest, await read_json(request))
    service = service_of(request)
    slot = _slot(service, req.model_id)
    service.unload(slot.model.model_id)
    done: Future[Any] = Future()
    done.set_result(types.UnloadModelResponse(model_id=slot.model.model_id))
    return untyped_future(service.futures.add(done, "unload_model"), slot.model.model_id)
