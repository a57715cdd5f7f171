"""Sampling sessions, ``asample`` and the futures endpoint that resolves every request."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import Future
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from tinker import types

from tinkerkit.backends import rest_sessions
from tinkerkit.server.responses import (
    PARSE_IN_THREAD_BYTES,
    HTTPError,
    json_response,
    ok,
    parse,
    read_json,
    result_of,
    service_of,
    status_for,
    untyped_future,
    wait_done,
)
from tinkerkit.server.sampler import SampleCall, Sampler
from tinkerkit.server.service import SamplerSlot
from tinkerkit.server.state import Pending, failure_body, forward
from tinkerkit.server.wire import forward_backward_output_to_proto, sample_response_to_proto

# How long one retrieve_future call holds a pending request before answering
# "try again". The SDK re-polls at once on try_again, so holding turns polling into
# a long poll: results go out as soon as they exist, without a busy loop.
LONG_POLL_S = 10.0
_PROTO = "application/x-protobuf"


def _slot(request: Request, session_id: str | None) -> SamplerSlot:
    slot = service_of(request).samplers.get(session_id or "")
    if slot is None:
        raise HTTPError(404, f"Sampling session {session_id!r} not found on this tinkerkit server.")
    return slot


async def create_sampling_session(request: Request) -> Response:
    service = service_of(request)
    req = await parse(request, types.CreateSamplingSessionRequest)
    if req.model_path is None and req.base_model is None:
        raise HTTPError(400, "create_sampling_session needs a model_path or a base_model")
    future = service.create_sampler(
        model_path=req.model_path, base_model=req.base_model, session_id=req.session_id
    )
    # Wait for the sampler, so a missing checkpoint fails here, as on the service.
    await result_of(future, "create_sampling_session")
    session_id = f"{req.session_id}:sample:{req.sampling_session_seq_id}"
    service.add_sampler(session_id, future, req.session_id)
    return ok(types.CreateSamplingSessionResponse(sampling_session_id=session_id))


async def join_sampling_session(request: Request) -> Response:
    req = await parse(request, types.JoinSamplingSessionRequest)
    slot = _slot(request, req.sampling_session_id)
    slot.clones += 1
    return ok(types.JoinSamplingSessionResponse(client_counter=slot.clones))


async def get_sampler(request: Request) -> Response:
    sampler_id = request.path_params["sampler_id"]
    service = service_of(request)
    slot = service.samplers.get(sampler_id)
    if slot is None:  # another session's, or an earlier process's: as the store recorded it
        try:
            found = await asyncio.to_thread(
                rest_sessions.get_sampler, service.store, service.backend, sampler_id
            )
        except Exception as exc:
            raise HTTPError(status_for(exc), str(exc)) from exc
        return ok(found)
    sampler: Sampler = await result_of(slot.sampler, "sampling session")
    return ok(
        types.GetSamplerResponse(
            sampler_id=slot.sampling_session_id,
            base_model=sampler.base_model,
            model_path=sampler.model_path,
        )
    )


def _tensor_data(model: Any) -> types.TensorData | None:
    """The request's JSON ``TensorData`` model as the ``types.TensorData`` the scorer takes."""
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
    service = service_of(request)
    req = await parse(request, types.SampleRequest)
    if req.sampling_session_id is None:
        raise HTTPError(
            400, "asample needs a sampling_session_id; create one with create_sampling_client."
        )
    slot = _slot(request, req.sampling_session_id)
    sampler: Sampler = await result_of(slot.sampler, "sampling session")
    call = SampleCall(
        prompt=req.prompt,
        num_samples=req.num_samples,
        params=req.sampling_params,
        sequence_ids=[],
        prompt_logprobs=bool(req.prompt_logprobs),
        topk_prompt_logprobs=req.topk_prompt_logprobs,
        topk_sample_logprobs=req.topk_sample_logprobs,
        target_prompt_logprobs=_tensor_data(req.target_prompt_logprobs),
        prompt_alt_tokens_k=req.prompt_alt_tokens_k,
        prompt_logprobs_last_n=req.prompt_logprobs_last_n,
        # One sampler serves the whole session; the SDK sends its client's
        # record_stability_info on every request, so each request records as it says.
        record_stability_info=bool(req.record_stability_info),
    )
    # Over a limit: a 400 now, before one id is made (100M of them took the server down).
    sampler.check_limits(call)
    entry = service.futures.add(Future(), "sample")
    # Sequence ids are scoped by the sampling session, as on the service.
    ids = [f"{slot.sampling_session_id}:{entry.request_id}:{i}" for i in range(req.num_samples)]
    call = dataclasses.replace(call, sequence_ids=ids)
    entry.sample_ids = ids
    # The answer (request id, sequence ids) goes out before the engine starts: the SDK
    # spends a millisecond or more reading it and sending retrieve_future, and the engine
    # uses that time; started first, its thread takes the GIL and the answer waits for it.
    return untyped_future(entry, background=BackgroundTask(_start_sample, sampler, call, entry))


async def _start_sample(sampler: Sampler, call: SampleCall, entry: Pending) -> None:
    """Submit an answered ``asample`` (on the event loop, so the submissions keep the
    order the answers went out in)."""
    if entry.future.cancelled():  # cancel_future came first
        return
    forward(sampler.sample(call), entry.future)


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
    service = service_of(request)
    req = await parse(request, types.FutureRetrieveRequest)
    entry = service.futures.get(req.request_id)
    if entry is None:
        raise HTTPError(404, f"Unknown request_id {req.request_id!r} (already retrieved?)")
    if not await wait_done(entry.future, LONG_POLL_S):
        return json_response(
            {"type": "try_again", "request_id": req.request_id, "queue_state": "active"}
        )
    if entry.future.cancelled():
        response = json_response({"error": "request was cancelled", "category": "user"})
    elif (exc := entry.future.exception()) is not None:
        response = json_response(failure_body(exc))
    else:
        result = entry.future.result()
        if _large(entry.kind, result):
            response = await asyncio.to_thread(_render, entry.kind, result)
        else:
            response = _render(entry.kind, result)
    # Forgotten once rendered: an answer that could not be made leaves it retrievable.
    service.futures.forget(req.request_id)
    return response


async def cancel_future(request: Request) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HTTPError(400, "cancel_future takes a JSON object with a request_id")
    service_of(request).futures.cancel(str(body.get("request_id", "")))
    return ok(None)
