"""Sampling sessions, ``asample`` and the futures endpoint that resolves every request."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tinker import types

from tinkerkit.server.responses import (
    PARSE_IN_THREAD_BYTES,
    HTTPError,
    ok,
    parse,
    read_json,
    result_of,
    state_of,
    untyped_future,
    wait_done,
)
from tinkerkit.server.state import Pending, SamplerSlot, failure_body, forward
from tinkerkit.server.wire import forward_backward_output_to_proto, sample_response_to_proto

if TYPE_CHECKING:
    from tinkerkit.backends.sampling_client import SamplingClient

# How long one retrieve_future call holds a pending request before answering
# "try again". The SDK re-polls at once on try_again, so holding turns polling into
# a long poll: results go out as soon as they exist, without a busy loop.
LONG_POLL_S = 10.0
_PROTO = "application/x-protobuf"


def _sampler(request: Request, session_id: str | None) -> SamplerSlot:
    slot = state_of(request).samplers.get(session_id or "")
    if slot is None:
        raise HTTPError(404, f"Sampling session {session_id!r} not found on this tinkerkit server.")
    return slot


async def create_sampling_session(request: Request) -> Response:
    state = state_of(request)
    req = await parse(request, types.CreateSamplingSessionRequest)
    try:
        future = state.service.create_sampling_client(
            model_path=req.model_path, base_model=req.base_model
        ).future()
    except Exception as exc:
        raise HTTPError(400, str(exc)) from exc
    # Wait for the client, so a missing checkpoint fails here, as on the service.
    await result_of(future, "create_sampling_session")
    session_id = f"{req.session_id}:sample:{req.sampling_session_seq_id}"
    state.add_sampler(session_id, future, req.base_model, req.model_path)
    return ok(types.CreateSamplingSessionResponse(sampling_session_id=session_id))


async def join_sampling_session(request: Request) -> Response:
    req = await parse(request, types.JoinSamplingSessionRequest)
    slot = _sampler(request, req.sampling_session_id)
    return ok(types.JoinSamplingSessionResponse(client_counter=next(slot.clones)))


async def get_sampler(request: Request) -> Response:
    slot = _sampler(request, request.path_params["sampler_id"])
    client = await result_of(slot.client, "sampling session")
    return ok(
        types.GetSamplerResponse(
            sampler_id=slot.sampling_session_id,
            base_model=slot.base_model or client.get_base_model(),
            model_path=slot.model_path or client.model_path,
        )
    )


def _tensor_data(model: Any) -> types.TensorData | None:
    """The request's JSON ``TensorData`` model as the ``types.TensorData`` clients take."""
    if model is None:
        return None
    return types.TensorData(
        data=model.data,
        dtype=model.dtype,
        shape=model.shape,
        sparse_crow_indices=model.sparse_crow_indices,
        sparse_col_indices=model.sparse_col_indices,
    )


async def asample(request: Request) -> Response:
    state = state_of(request)
    req = await parse(request, types.SampleRequest)
    if req.sampling_session_id is None:
        raise HTTPError(
            400, "asample needs a sampling_session_id; create one with create_sampling_client."
        )
    slot = _sampler(request, req.sampling_session_id)
    client = await result_of(slot.client, "sampling session")
    # Over a limit: a 400 now, before one id is made (100M of them took the server down).
    client._check_limits(req.prompt, req.num_samples, req.sampling_params)
    # The answer (request id, sequence ids) goes out before the engine starts: the SDK
    # spends a millisecond or more reading it and sending retrieve_future, and the engine
    # uses that time; started first, its thread takes the GIL and the answer waits for it.
    entry = state.futures.add(Future(), "sample")
    # Sequence ids are scoped by the sampling session, as on the service.
    entry.sample_ids = [
        f"{slot.sampling_session_id}:{entry.request_id}:{i}" for i in range(req.num_samples)
    ]
    return untyped_future(entry, background=BackgroundTask(_start_sample, client, req, entry))


async def _start_sample(client: SamplingClient, req: types.SampleRequest, entry: Pending) -> None:
    """Submit an answered ``asample`` to the offline client (on the event loop, so the
    submissions keep the order the answers went out in)."""
    if entry.future.cancelled():  # cancel_future came first
        return
    try:
        # One offline client serves the whole session; the SDK sends its client's
        # record_stability_info on every request, so each request records as it says.
        submitted = client._submit_sample(
            req.prompt,
            req.num_samples,
            req.sampling_params,
            include_prompt_logprobs=bool(req.prompt_logprobs),
            topk_prompt_logprobs=req.topk_prompt_logprobs,
            topk_sample_logprobs=req.topk_sample_logprobs,
            target_prompt_logprobs=_tensor_data(req.target_prompt_logprobs),
            prompt_alt_tokens_k=req.prompt_alt_tokens_k,
            prompt_logprobs_last_n=req.prompt_logprobs_last_n,
            record_stability_info=bool(req.record_stability_info),
            # The ids already promised: the SDK stamps them on the sequences, so a later
            # request naming a sequence finds its record.
            sequence_ids=entry.sample_ids,
        )
    except Exception as exc:
        entry.future.set_exception(exc)
        return
    forward(submitted.future(), entry.future)


def _render(kind: str, result: Any) -> Response:
    if kind == "forward_backward":
        return Response(forward_backward_output_to_proto(result), media_type=_PROTO)
    if kind == "sample":
        return Response(sample_response_to_proto(result), media_type=_PROTO)
    return ok(result)


def _large(kind: str, result: Any) -> bool:
    """Whether rendering ``result`` takes long enough to keep off the event loop."""
    if kind == "sample":
        tokens = sum(len(s.tokens) for s in result.sequences)
        return tokens * 8 > PARSE_IN_THREAD_BYTES
    if kind == "forward_backward":
        values = sum(
            len(v.data)
            for out in result.loss_fn_outputs
            for v in out.values()
            if v.data is not None
        )
        return values * 4 > PARSE_IN_THREAD_BYTES
    return False


async def retrieve_future(request: Request) -> Response:
    state = state_of(request)
    req = await parse(request, types.FutureRetrieveRequest)
    entry = state.futures.get(req.request_id)
    if entry is None:
        raise HTTPError(404, f"Unknown request_id {req.request_id!r} (already retrieved?)")
    if not await wait_done(entry.future, LONG_POLL_S):
        return JSONResponse(
            {"type": "try_again", "request_id": req.request_id, "queue_state": "active"}
        )
    state.futures.forget(req.request_id)
    if entry.future.cancelled():
        return JSONResponse({"error": "request was cancelled", "category": "user"})
    exc = entry.future.exception()
    if exc is not None:
        return JSONResponse(failure_body(exc))
    result = entry.future.result()
    if _large(entry.kind, result):
        return await asyncio.to_thread(_render, entry.kind, result)
    return _render(entry.kind, result)


async def cancel_future(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "cancel_future takes a JSON object with a request_id")
    state_of(request).futures.cancel(str(body.get("request_id", "")))
    return ok(None)
