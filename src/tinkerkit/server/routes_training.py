"""Model endpoints: create, info, forward/backward, optimizer step, save and load.

Each submitting endpoint turns the request into one call on the model's offline
``TrainingClient`` while holding the model's turn (its ``seq_id``), so the offline
dispatcher sees the requests in the order the SDK numbered them, and answers with a
request id that ``/api/v1/retrieve_future`` resolves.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import tinker
from starlette.requests import Request
from starlette.responses import Response
from tinker import types

from tinkerkit.backends.limits import check_lora_rank
from tinkerkit.errors import RequestLimitError
from tinkerkit.models.tokenizers.folders import saved_folder
from tinkerkit.server.body import decompress_zstd
from tinkerkit.server.responses import (
    PARSE_IN_THREAD_BYTES,
    HTTPError,
    ok,
    parse,
    state_of,
    untyped_future,
    wait_done,
)
from tinkerkit.server.state import ModelSlot, ServerState, chain, failed
from tinkerkit.server.wire import ForwardBackwardCall, parse_forward_backward

if TYPE_CHECKING:
    from tinkerkit.backends.training_client import TrainingClient

_PROTO = "application/x-protobuf"
# A load is answered once it ran, so a missing checkpoint can be a 404 (as on the service).
LOAD_TIMEOUT_S = 120.0


def _slot(state: ServerState, model_id: str | None) -> ModelSlot:
    slot = state.models.get(model_id or "")
    if slot is None:
        raise HTTPError(
            404,
            f"Model {model_id!r} not found on this tinkerkit server; create it with "
            "ServiceClient.create_lora_training_client(...) first.",
        )
    return slot


def _call(fn: Callable[[], Any]) -> Future[Any]:
    """Run an offline submission; a refusal (bad argument) becomes a failed future."""
    try:
        future: Future[Any] = fn().future()
        return future
    except Exception as exc:
        return failed(exc)


async def _submit(
    request: Request, model_id: str | None, seq_id: int | None, kind: str, fn: Callable[[Any], Any]
) -> Response:
    state = state_of(request)
    slot = _slot(state, model_id)
    async with slot.sequencer.turn(seq_id):
        future = _call(lambda: fn(slot.client))
    return untyped_future(state.futures.add(future, kind, owner=slot.model_id), slot.model_id)


async def create_model(request: Request) -> Response:
    state = state_of(request)
    req = await parse(request, types.CreateModelRequest)
    lora = req.lora_config or types.LoraConfig(rank=32)
    check_lora_rank(lora.rank)  # a 400 before anything is allocated

    def register(client: TrainingClient) -> types.CreateModelResponse:
        state.register_model(client.model_id, client)
        return types.CreateModelResponse(model_id=client.model_id)

    future = _call(
        lambda: state.service.create_lora_training_client(
            base_model=req.base_model,
            rank=lora.rank,
            seed=lora.seed,
            train_mlp=lora.train_mlp,
            train_attn=lora.train_attn,
            train_unembed=lora.train_unembed,
            user_metadata=req.user_metadata,
            optimizer=req.optimizer_config,
        )
    )
    return untyped_future(state.futures.add(chain(future, register), "create_model"))


async def get_info(request: Request) -> Response:
    req = await parse(request, types.GetInfoRequest)
    slot = _slot(state_of(request), req.model_id)
    info = slot.client.get_info()
    # The SDK's get_tokenizer() does AutoTokenizer.from_pretrained(tokenizer_id): point it
    # at a local folder holding this model's tokenizer, so it works offline. Loading or
    # building a real tokenizer takes seconds: off the event loop.
    name = info.model_data.tokenizer_id or info.model_name or "model"
    folder = await asyncio.to_thread(lambda: saved_folder(slot.client.get_tokenizer(), name))
    model_data = info.model_data.model_copy(update={"tokenizer_id": str(folder)})
    return ok(info.model_copy(update={"model_id": slot.model_id, "model_data": model_data}))


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
        slot = _slot(state_of(request), call.model_id)
        async with slot.sequencer.turn(call.seq_id):
            raise call.refused
    method = "forward" if call.forward_only else "forward_backward"
    return await _submit(
        request,
        call.model_id,
        call.seq_id,
        "forward_backward",
        lambda c: getattr(c, method)(call.data, call.loss_fn, call.loss_fn_config),
    )


async def optim_step(request: Request) -> Response:
    req = await parse(request, types.OptimStepRequest)
    return await _submit(
        request, req.model_id, req.seq_id, "optim_step", lambda c: c.optim_step(req.optim_params)
    )


async def save_weights(request: Request) -> Response:
    req = await parse(request, types.SaveWeightsRequest)
    name = req.path or f"state-{uuid.uuid4().hex[:8]}"
    return await _submit(
        request,
        req.model_id,
        req.seq_id,
        "save_weights",
        lambda c: c.save_state(
            name,
            ttl_seconds=req.ttl_seconds,
            overwrite=req.overwrite,
            user_metadata=req.user_metadata,
        ),
    )


async def save_weights_external(request: Request) -> Response:
    req = await parse(request, types.SaveWeightsExternalRequest)
    return await _submit(
        request,
        req.model_id,
        req.seq_id,
        "save_weights_external",
        lambda c: c.save_weights_external(
            req.path,
            ttl_seconds=req.ttl_seconds,
            age_encryption_recipients=req.age_encryption_recipients,
        ),
    )


async def save_weights_for_sampler(request: Request) -> Response:
    state = state_of(request)
    req = await parse(request, types.SaveWeightsForSamplerRequest)
    if req.path is not None:
        name = req.path
        return await _submit(
            request,
            req.model_id,
            req.seq_id,
            "save_weights_for_sampler",
            lambda c: c.save_weights_for_sampler(
                name, ttl_seconds=req.ttl_seconds, user_metadata=req.user_metadata
            ),
        )
    # No name: an unnamed snapshot behind a new sampling session (save_weights_and_get_
    # sampling_client). The session id is known now; its client once the save ran.
    slot = _slot(state, req.model_id)
    session_id = f"{slot.model_id}:sample:{req.sampling_session_seq_id or 0}:{uuid.uuid4().hex[:6]}"
    async with slot.sequencer.turn(req.seq_id):
        client = _call(lambda: slot.client.save_weights_and_get_sampling_client(kind=req.kind))
    state.add_sampler(session_id, client, None, None)
    done = chain(
        client,
        lambda _: types.SaveWeightsForSamplerResponseInternal(sampling_session_id=session_id),
    )
    return untyped_future(state.futures.add(done, "save_weights_for_sampler"), slot.model_id)


async def _answer_status_errors(future: Future[Any]) -> None:
    """Wait for a load and answer its HTTP-status failures (a missing checkpoint is a 404,
    a checkpoint of the wrong kind a 400) as HTTP errors, as the service does — so the SDK
    raises ``tinker.NotFoundError``/``BadRequestError`` there, as offline clients do."""
    if not await wait_done(future, LOAD_TIMEOUT_S):
        return
    exc = None if future.cancelled() else future.exception()
    if isinstance(exc, tinker.APIStatusError):
        raise HTTPError(exc.status_code, str(exc))


async def load_weights(request: Request) -> Response:
    state = state_of(request)
    req = await parse(request, types.LoadWeightsRequest)
    if req.model_id is not None:
        slot = _slot(state, req.model_id)
        wire_id = slot.model_id
        async with slot.sequencer.turn(req.seq_id):
            loading = _call(
                lambda: _relabel(
                    slot.client.load_weights(req.path, with_optimizer=bool(req.optimizer)),
                    wire_id,
                )
            )
            await _answer_status_errors(loading)
        return untyped_future(state.futures.add(loading, "load_weights"), wire_id)
    # Create-via-load: the SDK names the model itself, "<session>:train:<model_seq_id>".
    model_id = f"{req.session_id}:train:{req.model_seq_id}"
    service = state.service
    create = (
        service.create_training_client_from_state_with_optimizer
        if req.optimizer
        else functools.partial(
            service.create_training_client_from_state, optimizer=req.optimizer_config
        )
    )

    def register(client: TrainingClient) -> types.LoadWeightsResponse:
        state.register_model(model_id, client)
        return types.LoadWeightsResponse(path=req.path, model_id=model_id)

    future = _call(
        lambda: create(req.path, base_model=req.base_model, user_metadata=req.user_metadata)
    )
    await _answer_status_errors(future)
    return untyped_future(state.futures.add(chain(future, register), "load_weights"), model_id)


class _Relabeled:
    """An offline future whose ``LoadWeightsResponse`` carries the wire model id."""

    def __init__(self, inner: Any, model_id: str) -> None:
        self._inner, self._model_id = inner, model_id

    def future(self) -> Future[Any]:
        return chain(
            self._inner.future(), lambda r: r.model_copy(update={"model_id": self._model_id})
        )


def _relabel(inner: Any, model_id: str) -> _Relabeled:
    return _Relabeled(inner, model_id)


async def unload_model(request: Request) -> Response:
    req = await parse(request, types.UnloadModelRequest)
    state = state_of(request)
    slot = _slot(state, req.model_id)
    state.models.pop(slot.model_id, None)
    done: Future[Any] = Future()
    done.set_result(types.UnloadModelResponse(model_id=slot.model_id))
    return untyped_future(state.futures.add(done, "unload_model"), slot.model_id)
