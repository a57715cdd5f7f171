"""Served sampling: the SDK-stamped sequence ids are the ones the server recorded, and
``sample_response_to_proto`` encodes every field the SDK's ``response_conv`` decodes."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types
from tinker.proto.response_conv import deserialize_sample_response
from tinker.types.topk_logprobs import TopkLogprobs

from tinkerkit.server.wire import sample_response_to_proto

MODEL = "tinkerkit/tiny"
PROMPT = types.ModelInput.from_ints(list(b"Hello there"))
PARAMS = types.SamplingParams(max_tokens=4, temperature=1.0, seed=0)


def _records(server):
    (service,) = server.app.state.host.services()
    return service.sequences


def test_stamped_sequence_ids_are_the_recorded_ones(official, server):
    training = official.create_lora_training_client(base_model=MODEL, rank=8).result()
    recording = training.save_weights_and_get_sampling_client(record_stability_info=True).result()
    plain = training.save_weights_and_get_sampling_client().result()
    records = _records(server)

    out = recording.sample(PROMPT, 3, PARAMS).result()
    ids = [s.sequence_id for s in out.sequences]
    assert len(set(ids)) == 3 and all(":sample:" in i for i in ids)  # the offline client's ids
    for seq in out.sequences:
        record = records.get(seq.sequence_id)
        assert record is not None
        assert record.prompt.tolist() == PROMPT.to_ints()
        assert record.tokens.tolist() == seq.tokens
        np.testing.assert_allclose(record.logprobs, seq.logprobs, atol=1e-6)

    unrecorded = plain.sample(PROMPT, 2, PARAMS).result()
    assert all(records.get(s.sequence_id) is None for s in unrecorded.sequences)
    assert not {s.sequence_id for s in unrecorded.sequences} & set(ids)


def _topk(rows: int, k: int, seed: int) -> TopkLogprobs:
    rng = np.random.default_rng(seed)
    return TopkLogprobs(
        token_ids=rng.integers(0, 200, (rows, k)).astype(np.int32),
        logprobs=-rng.random((rows, k)).astype(np.float32),
    )


def test_sample_response_round_trips_through_the_sdk_decoder():
    sparse = types.TensorData(
        data=np.array([-0.5, 0.0, -2.25], dtype=np.float32),
        dtype="float32",
        shape=[4, 3],
        sparse_crow_indices=[0, 1, 1, 3, 3],
        sparse_col_indices=[2, 0, 1],
    )
    alt = types.PromptAltTokens(
        tokens=types.TensorData.from_numpy(np.arange(8, dtype=np.int64).reshape(4, 2)),
        logprobs=types.TensorData.from_numpy(-np.arange(8, dtype=np.float32).reshape(4, 2)),
    )
    sent = types.SampleResponse(
        sequences=[
            types.SampledSequence(
                stop_reason="stop",
                sequence_id="s0",
                tokens_np=np.array([5, 6, 7], dtype=np.int32),
                logprobs_np=np.array([-1.0, -2.0, -3.0], dtype=np.float32),
                topk_logprobs_np=_topk(3, 2, 0),
            ),
            types.SampledSequence(
                stop_reason="length",
                sequence_id="s1",
                tokens_np=np.array([8], dtype=np.int32),
                logprobs_np=np.array([-0.5], dtype=np.float32),
            ),
        ],
        prompt_logprobs_np=np.array([np.nan, -1.5, -2.5, -3.5, -4.5], dtype=np.float32),
        topk_prompt_logprobs_np=_topk(5, 3, 1),
        target_prompt_logprobs=sparse,
        prompt_alt_tokens=alt,
        prompt_cache_hit_tokens=3,
    )
    got = deserialize_sample_response(sample_response_to_proto(sent))

    assert [s.stop_reason for s in got.sequences] == ["stop", "length"]
    assert [s.tokens for s in got.sequences] == [[5, 6, 7], [8]]
    first = got.sequences[0].topk_logprobs_np
    assert first is not None and sent.sequences[0].topk_logprobs_np is not None
    np.testing.assert_array_equal(first.token_ids, sent.sequences[0].topk_logprobs_np.token_ids)
    np.testing.assert_array_equal(first.logprobs, sent.sequences[0].topk_logprobs_np.logprobs)
    assert got.sequences[1].topk_logprobs_np is None
    assert got.prompt_logprobs == [None, -1.5, -2.5, -3.5, -4.5]
    assert got.topk_prompt_logprobs_np is not None and sent.topk_prompt_logprobs_np is not None
    np.testing.assert_array_equal(
        got.topk_prompt_logprobs_np.token_ids, sent.topk_prompt_logprobs_np.token_ids
    )
    target = got.target_prompt_logprobs
    assert target is not None and target.dtype == "float32" and target.shape == [4, 3]
    assert target.sparse_crow_indices == [0, 1, 1, 3, 3] and target.sparse_col_indices == [2, 0, 1]
    np.testing.assert_array_equal(target.to_numpy(), sparse.to_numpy())
    assert got.prompt_alt_tokens is not None
    assert got.prompt_alt_tokens.tokens.dtype == "int64"
    np.testing.assert_array_equal(got.prompt_alt_tokens.tokens.to_numpy(), alt.tokens.to_numpy())
    np.testing.assert_array_equal(
        got.prompt_alt_tokens.logprobs.to_numpy(), alt.logprobs.to_numpy()
    )
    assert got.prompt_cache_hit_tokens == 3


def test_dense_target_prompt_logprobs_stay_dense_on_the_wire():
    dense = types.TensorData.from_numpy(np.array([[-1.0, 0.0], [0.0, -2.0]], dtype=np.float32))
    sent = types.SampleResponse(sequences=[], target_prompt_logprobs=dense)
    got = deserialize_sample_response(sample_response_to_proto(sent)).target_prompt_logprobs
    assert got is not None and got.sparse_crow_indices is None and got.shape == [2, 2]
    np.testing.assert_array_equal(got.to_numpy(), dense.to_numpy())


# --- asample answers first, the engine runs after (routes_sampling._start_sample) ----------


def test_concurrent_samples_answered_before_they_run_get_their_own_results(official):
    """Each asample is answered (request id, sequence ids) before its engine run starts;
    eight in flight at once still resolve to their own request's sequences."""
    import tinkerkit as tk

    served = official.create_sampling_client(base_model=MODEL).result()
    direct = tk.connect("mock").create_sampling_client(base_model=MODEL).result()
    params = [types.SamplingParams(max_tokens=4, temperature=1.0, seed=s) for s in range(8)]

    futures = [served.sample(PROMPT, 2, p) for p in params]
    got = [f.result() for f in futures]
    want = [direct.sample(PROMPT, 2, p).result() for p in params]

    assert [[s.tokens for s in g.sequences] for g in got] == [
        [s.tokens for s in w.sequences] for w in want
    ]
    ids = [s.sequence_id for g in got for s in g.sequences]
    assert len(set(ids)) == len(ids) == 16


def test_a_sample_refused_after_its_answer_fails_its_future(official):
    import tinker

    sampler = official.create_sampling_client(base_model=MODEL).result()
    bad = types.ModelInput.from_ints([1, 2, 10**9])  # out of the vocabulary
    future = sampler.sample(bad, 1, PARAMS)
    with pytest.raises(tinker.RequestFailedError, match="vocab"):
        future.result(timeout=30)
    assert sampler.sample(PROMPT, 1, PARAMS).result().sequences  # the session still works


def test_a_sample_cancelled_before_it_started_never_reaches_the_engine():
    import asyncio
    from concurrent.futures import Future

    from tinkerkit.server.routes_sampling import _start_sample
    from tinkerkit.server.state import Pending

    class NeverCalled:
        def _submit_sample(self, *args, **kwargs):
            raise AssertionError("a cancelled sample was submitted")

    entry = Pending("req-1", Future(), "sample", ["s:sample:0:req-1:0"])
    entry.future.cancel()
    req = types.SampleRequest(
        sampling_session_id="s:sample:0", num_samples=1, prompt=PROMPT, sampling_params=PARAMS
    )
    asyncio.run(_start_sample(NeverCalled(), req, entry))
    assert entry.future.cancelled()


def test_forward_settles_the_handed_out_future_and_passes_cancels_back():
    from concurrent.futures import Future

    from tinkerkit.server.state import forward

    source, target = Future(), Future()
    forward(source, target)
    source.set_result(7)
    assert target.result() == 7

    source, target = Future(), Future()
    forward(source, target)
    source.set_exception(ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        target.result()

    source, target = Future(), Future()
    forward(source, target)
    target.cancel()
    assert source.cancelled()
