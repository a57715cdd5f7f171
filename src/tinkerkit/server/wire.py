"""Wire conversion between tinker 0.38's protobuf bodies and ``tinker.types``.

The SDK sends ``forward_backward`` as a ``tinker_public_pb2.ForwardBackwardRequest``
and expects ``ForwardBackwardOutput`` and ``SampleResponse`` results back as protobuf
(it refuses JSON for those two types). These are the inverses of the SDK's own
``tinker.proto.request_conv`` / ``response_conv``, built on the SDK's generated
messages so a field added upstream shows up here as a parse or test failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tinker import types
from tinker.proto import tinker_public_pb2 as pb
from tinker.types.topk_logprobs import TopkLogprobs

from tinkerkit.backends.limits import MAX_TOKENS_PER_REQUEST, check_datum_count
from tinkerkit.errors import BatchTooLargeError, RequestLimitError

_PROTO_TO_NUMPY: dict[int, np.dtype[Any]] = {
    pb.DTYPE_FLOAT32: np.dtype(np.float32),
    pb.DTYPE_INT64: np.dtype(np.int64),
    pb.DTYPE_INT32: np.dtype(np.int32),
}
_PROTO_TO_TENSOR_DTYPE: dict[int, types.TensorDtype] = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_INT64: "int64",
    pb.DTYPE_INT32: "int64",
}
_STOP_REASON = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}


@dataclass(frozen=True)
class ForwardBackwardCall:
    """A decoded ``/api/v1/forward_backward`` body."""

    model_id: str
    seq_id: int
    loss_fn: str
    loss_fn_config: dict[str, float | str] | None
    forward_only: bool
    data: list[types.Datum]
    refused: RequestLimitError | None = None
    """Set (``data`` empty) when the request is over a limit: it is answered with this
    400, after taking its turn (``seq_id``) so the model's next request need not wait."""


def _tensor(msg: pb.Tensor) -> types.TensorData:
    np_dtype = _PROTO_TO_NUMPY.get(msg.dtype)
    dtype = _PROTO_TO_TENSOR_DTYPE.get(msg.dtype)
    if np_dtype is None or dtype is None:
        raise ValueError(f"unsupported tensor dtype {msg.dtype} in forward_backward request")
    shape = list(msg.shape) or None
    if msg.HasField("sparse_csr"):
        csr = msg.sparse_csr
        return types.TensorData(
            data=np.frombuffer(csr.values, dtype=np_dtype).copy(),
            dtype=dtype,
            shape=shape,
            sparse_crow_indices=np.frombuffer(csr.crow_indices, dtype=np.int64).tolist(),
            sparse_col_indices=np.frombuffer(csr.col_indices, dtype=np.int64).tolist(),
        )
    return types.TensorData(
        data=np.frombuffer(msg.dense, dtype=np_dtype).copy(), dtype=dtype, shape=shape
    )


def _chunk(msg: pb.Chunk) -> types.ModelInputChunk:
    which = msg.WhichOneof("chunk")
    if which == "encoded_text":
        tokens = np.frombuffer(msg.encoded_text.tokens, dtype=np.int32)
        # tolist() makes the Python ints in C: a comprehension costs 20x more per token.
        return types.EncodedTextChunk(tokens=tokens.tolist())
    if which == "image":
        return types.ImageChunk(
            data=msg.image.data,
            format=msg.image.format,  # type: ignore[arg-type]
            expected_tokens=(
                msg.image.expected_tokens if msg.image.HasField("expected_tokens") else None
            ),
        )
    # Offline engines are text-only; name the chunk kind so the error says why.
    raise ValueError(f"model input chunk kind {which!r} is not supported by tinkerkit serve")


def _config(msg: pb.ForwardBackwardRequest) -> dict[str, float | str] | None:
    # The SDK dual-writes floats into the legacy map and the v2 map; v2 wins.
    config: dict[str, float | str] = {k: float(v) for k, v in msg.loss_fn_config.items()}
    for key, value in msg.loss_fn_config_v2.items():
        kind = value.WhichOneof("value")
        config[key] = value.text if kind == "text" else float(value.number)
    return config or None


def _span(msg: pb.ProvenanceSpan) -> types.PromptProvenanceSpan | types.SampledProvenanceSpan:
    which = msg.WhichOneof("span")
    if which == "prompt_tokens":
        p = msg.prompt_tokens
        return types.PromptProvenanceSpan(
            sequence_id=p.sequence_id, offset=p.offset, length=p.length
        )
    if which == "sampled_tokens":
        s = msg.sampled_tokens
        return types.SampledProvenanceSpan(
            sequence_id=s.sequence_id, offset=s.offset, length=s.length
        )
    raise ValueError("a provenance span has neither prompt_tokens nor sampled_tokens")


def _datum(msg: pb.Datum) -> types.Datum:
    # Provenance comes as a pair; the SDK writes a list only when it is set, so an
    # empty list on the wire and an unset one read the same.
    spans = None
    if len(msg.model_input_spans) or len(msg.loss_fn_input_spans):
        spans = (
            [_span(s) for s in msg.model_input_spans],
            [_span(s) for s in msg.loss_fn_input_spans],
        )
    return types.Datum(
        model_input=types.ModelInput(chunks=[_chunk(c) for c in msg.model_input]),
        loss_fn_inputs={name: _tensor(t) for name, t in msg.loss_fn_inputs.items()},
        model_input_spans=spans[0] if spans else None,
        loss_fn_input_spans=spans[1] if spans else None,
    )


def _check_size(msg: pb.ForwardBackwardRequest) -> None:
    """The request limits, from the message itself: refused before any datum is built."""
    check_datum_count(len(msg.data))
    total = 0
    for datum in msg.data:
        for chunk in datum.model_input:
            if chunk.WhichOneof("chunk") == "encoded_text":
                total += len(chunk.encoded_text.tokens) // 4  # int32 tokens
    if total > MAX_TOKENS_PER_REQUEST:
        raise BatchTooLargeError(total, MAX_TOKENS_PER_REQUEST)


def parse_forward_backward(body: bytes) -> ForwardBackwardCall:
    """Decode a protobuf ``ForwardBackwardRequest`` body.

    Example:
        >>> from tinker.proto.request_conv import forward_backward_request_to_proto
        >>> call = parse_forward_backward(forward_backward_request_to_proto(req).SerializeToString())
        >>> call.loss_fn, len(call.data)
    """
    msg = pb.ForwardBackwardRequest()
    msg.ParseFromString(body)
    try:
        _check_size(msg)
    except RequestLimitError as exc:
        return ForwardBackwardCall(msg.model_id, msg.seq_id, msg.loss_fn, None, False, [], exc)
    data = [_datum(d) for d in msg.data]
    return ForwardBackwardCall(
        model_id=msg.model_id,
        seq_id=msg.seq_id,
        loss_fn=msg.loss_fn,
        loss_fn_config=_config(msg),
        forward_only=msg.forward_only,
        data=data,
    )


def _batched(arrays: list[np.ndarray], dtype: types.TensorDtype) -> pb.BatchedTensor:
    np_dtype = np.dtype(np.float32) if dtype == "float32" else np.dtype(np.int64)
    flat = [np.ascontiguousarray(a, dtype=np_dtype).reshape(-1) for a in arrays]
    trailing = list(arrays[0].shape[1:]) if arrays and arrays[0].ndim > 1 else []
    offsets = np.cumsum([0] + [a.nbytes for a in flat], dtype=np.int64)
    return pb.BatchedTensor(
        data=b"".join(a.tobytes() for a in flat),
        offsets=offsets.tobytes(),
        dtype=pb.DTYPE_FLOAT32 if dtype == "float32" else pb.DTYPE_INT64,
        trailing_shape=trailing,
    )


def forward_backward_output_to_proto(out: types.ForwardBackwardOutput) -> bytes:
    """Encode a ``ForwardBackwardOutput`` the way the SDK's ``response_conv`` decodes it.

    Example:
        >>> from tinker.proto.response_conv import deserialize_forward_backward_output
        >>> deserialize_forward_backward_output(forward_backward_output_to_proto(out))
    """
    msg = pb.ForwardBackwardOutput(
        loss_fn_output_type=out.loss_fn_output_type,
        metrics={k: float(v) for k, v in out.metrics.items()},
    )
    # One record per run of datums whose fields have the same dtypes and trailing shapes
    # (all of them, unless (N, K) outputs of different K are mixed): a BatchedTensor has
    # one trailing shape, and the SDK concatenates the records' datums in order.
    rows = [
        {name: (t.dtype, np.asarray(t.to_numpy())) for name, t in o.items()}
        for o in out.loss_fn_outputs
    ]
    start = 0
    while start < len(rows):
        end = start + 1
        while end < len(rows) and _layout(rows[end]) == _layout(rows[start]):
            end += 1
        record = msg.loss_fn_outputs.add()
        record.type_tag = out.loss_fn_output_type
        record.num_datums = end - start
        for name, (dtype, _) in rows[start].items():
            arrays = [row[name][1] for row in rows[start:end]]
            record.fields[name].CopyFrom(_batched(arrays, dtype))
        start = end
    return msg.SerializeToString()


def _layout(row: Mapping[str, tuple[str, np.ndarray]]) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(name, dtype, array.shape[1:]) for name, (dtype, array) in row.items()]


def _topk_to_proto(topk: TopkLogprobs) -> pb.TopkLogprobs:
    ids = np.ascontiguousarray(topk.token_ids, dtype=np.int32)
    length, k = ids.shape
    return pb.TopkLogprobs(
        token_ids=ids.tobytes(),
        logprobs=np.ascontiguousarray(topk.logprobs, dtype=np.float32).tobytes(),
        k=k,
        length=length,
    )


def _tensor_to_proto(tensor: types.TensorData) -> pb.Tensor:
    """The inverse of the SDK's ``response_conv._tensor_data_from_proto`` (CSR stays CSR)."""
    np_dtype = np.dtype(np.float32) if tensor.dtype == "float32" else np.dtype(np.int64)
    msg = pb.Tensor(
        dtype=pb.DTYPE_FLOAT32 if tensor.dtype == "float32" else pb.DTYPE_INT64,
        shape=list(tensor.shape or []),
    )
    values = np.asarray(tensor.data, dtype=np_dtype).tobytes()
    if tensor.sparse_crow_indices is not None:
        msg.sparse_csr.values = values
        msg.sparse_csr.crow_indices = np.asarray(tensor.sparse_crow_indices, np.int64).tobytes()
        msg.sparse_csr.col_indices = np.asarray(tensor.sparse_col_indices or [], np.int64).tobytes()
    else:
        msg.dense = values
    return msg


def sample_response_to_proto(resp: types.SampleResponse) -> bytes:
    """Encode a ``SampleResponse`` the way the SDK's ``response_conv`` decodes it.

    Example:
        >>> from tinker.proto.response_conv import deserialize_sample_response
        >>> deserialize_sample_response(sample_response_to_proto(resp)).sequences[0].tokens
    """
    msg = pb.SampleResponse(prompt_cache_hit_tokens=resp.prompt_cache_hit_tokens)
    for seq in resp.sequences:
        out = msg.sequences.add()
        out.stop_reason = _STOP_REASON[seq.stop_reason]
        out.tokens = np.asarray(seq.tokens, dtype=np.int32).tobytes()
        if seq.logprobs is not None:
            out.logprobs = np.asarray(seq.logprobs, dtype=np.float32).tobytes()
        if seq.topk_logprobs_np is not None:
            out.topk_sampled_logprobs.CopyFrom(_topk_to_proto(seq.topk_logprobs_np))
    if resp.prompt_logprobs_np is not None:
        msg.prompt_logprobs = np.asarray(resp.prompt_logprobs_np, dtype=np.float32).tobytes()
    elif resp.prompt_logprobs is not None:
        values = [np.nan if v is None else v for v in resp.prompt_logprobs]
        msg.prompt_logprobs = np.asarray(values, dtype=np.float32).tobytes()
    if resp.topk_prompt_logprobs_np is not None:
        msg.topk_prompt_logprobs.CopyFrom(_topk_to_proto(resp.topk_prompt_logprobs_np))
    if resp.target_prompt_logprobs is not None:
        msg.target_prompt_logprobs.CopyFrom(_tensor_to_proto(resp.target_prompt_logprobs))
    if resp.prompt_alt_tokens is not None:
        msg.prompt_alt_tokens.tokens.CopyFrom(_tensor_to_proto(resp.prompt_alt_tokens.tokens))
        msg.prompt_alt_tokens.logprobs.CopyFrom(_tensor_to_proto(resp.prompt_alt_tokens.logprobs))
    return msg.SerializeToString()
