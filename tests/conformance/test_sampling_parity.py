"""Sampling as tinker 0.38 does it, with numbers: the stop rule, top-k sample and prompt
logprobs, target prompt logprobs (dense and sparse), prompt alternative tokens, and
sequence ids. Every logprob is checked against ``compute_logprobs`` of the same tokens."""

from __future__ import annotations

import numpy as np
import pytest
import tinker
from tinker import types

from tinkerkit.data import completion_datum

MASK = -99999.0  # tinker.types.topk_logprobs.MASK_LOGPROB
PROMPT, COMPLETION = "Q: ping\nA:", " pong\n\nUser:ok"
ROLE_STOP = "\n\nUser:"  # the cookbook RoleColon renderer's stop string
NEVER = "\x00\x01never"


def _tol(target) -> float:
    # Offline, sampling and compute_logprobs run the same model in float32.
    return target.logprob_tolerance if target.backend == "tinker" else 1e-5


def _ints(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def _prompt(tokenizer, text: str = "Once upon") -> types.ModelInput:
    return types.ModelInput.from_ints(_ints(tokenizer, text))


@pytest.fixture
def sampler(training):
    return training.save_weights_and_get_sampling_client().result()


@pytest.fixture
def taught(training, tokenizer, target):
    """A sampler whose greedy answer to PROMPT is COMPLETION then EOS (trained until it is)."""
    datum = completion_datum(PROMPT, COMPLETION, tokenizer, add_eos=True)
    want = [*_ints(tokenizer, COMPLETION), tokenizer.eos_token_id]
    greedy = types.SamplingParams(max_tokens=len(want) + 4, temperature=0.0)
    prompt = _prompt(tokenizer, PROMPT)
    for _ in range(12):
        for _ in range(10):
            training.forward_backward([datum], "cross_entropy")
            training.optim_step(types.AdamParams(learning_rate=target.learning_rate))
        sampler = training.save_weights_and_get_sampling_client().result()
        if sampler.sample(prompt, 1, greedy).result().sequences[0].tokens == want:
            return sampler, prompt, want
    pytest.fail("the model did not learn to answer PROMPT with COMPLETION + EOS")


def _scored(sampler, prefixes: list[list[int]]) -> list[float]:
    """compute_logprobs of each prefix's last token (requests pipelined)."""
    futures = [sampler.compute_logprobs(types.ModelInput.from_ints(p)) for p in prefixes]
    return [f.result()[-1] for f in futures]


def _assert_topk_rows(ids: np.ndarray, lps: np.ndarray, k: int) -> None:
    assert ids.dtype == np.int32 and lps.dtype == np.float32
    assert ids.shape[1] == lps.shape[1] == k
    assert np.all(np.diff(lps, axis=1) <= 0), "top-k rows must be in descending order"
    assert all(len(set(row)) == k for row in ids.tolist()), "a top-k row repeats a token"


# --- the stop rule ----------------------------------------------------------------------


def test_a_stop_string_keeps_eos_stopping(taught, tokenizer):
    """stop=None and a stop list that never matches draw the same sequences, ending at EOS;
    stop=[] disables EOS and runs every sample to max_tokens with the same draws."""
    sampler, prompt, _ = taught
    eos = tokenizer.eos_token_id

    def run(stop):
        params = types.SamplingParams(max_tokens=24, temperature=1.0, seed=7, stop=stop)
        return sampler.sample(prompt, 16, params).result().sequences

    default = run(None)
    ended = [s for s in default if s.stop_reason == "stop"]
    assert len(ended) >= 8
    assert all(s.tokens[-1] == eos and eos not in s.tokens[:-1] for s in ended)
    assert all(len(s.tokens) == 24 for s in default if s.stop_reason == "length")
    for stop in ([NEVER], NEVER, [NEVER, ROLE_STOP[::-1]]):
        same = run(stop)
        assert [s.tokens for s in same] == [s.tokens for s in default], stop
        assert [s.stop_reason for s in same] == [s.stop_reason for s in default], stop
    unstopped = run([])
    assert all(len(s.tokens) == 24 and s.stop_reason == "length" for s in unstopped)
    for short, full in zip(default, unstopped, strict=True):
        assert full.tokens[: len(short.tokens)] == short.tokens


def test_stop_strings_and_token_ids_stop_and_keep_the_stopping_token(taught, tokenizer):
    sampler, prompt, want = taught

    def greedy(stop):
        params = types.SamplingParams(max_tokens=len(want) + 6, temperature=0.0, stop=stop)
        return sampler.sample(prompt, 1, params).result().sequences[0]

    # The first token whose decoded text completes the stop string, kept in tokens.
    cut = next(i for i in range(1, len(want)) if ROLE_STOP in tokenizer.decode(want[:i]))
    for stop in ([ROLE_STOP], ROLE_STOP):
        seq = greedy(stop)
        assert seq.tokens == want[:cut] and seq.stop_reason == "stop", stop
    middle = want[len(want) // 2]
    seq = greedy([middle])
    assert seq.tokens == want[: want.index(middle) + 1] and seq.stop_reason == "stop"
    unused = next(t for t in range(1, 200) if t not in want)
    seq = greedy([unused])  # EOS still stops
    assert seq.tokens == want and seq.stop_reason == "stop"
    seq = greedy(None)
    assert seq.tokens == want and seq.stop_reason == "stop"
    seq = greedy([])
    assert seq.tokens[: len(want)] == want and len(seq.tokens) == len(want) + 6
    assert seq.stop_reason == "length"


# --- top-k logprobs ---------------------------------------------------------------------


def test_topk_sample_logprobs(sampler, tokenizer, target):
    prompt = _prompt(tokenizer)
    k = 4
    for params in (
        types.SamplingParams(max_tokens=5, temperature=0.0, stop=[]),
        types.SamplingParams(max_tokens=5, temperature=1.0, seed=3, stop=[]),
    ):
        out = sampler.sample(prompt, 2, params, topk_sample_logprobs=k).result()
        for seq in out.sequences:
            top = seq.topk_logprobs_np
            assert top is not None and top.token_ids.shape == (len(seq.tokens), k)
            _assert_topk_rows(top.token_ids, top.logprobs, k)
            assert seq.logprobs is not None
            assert np.all(top.logprobs[:, 0] >= np.asarray(seq.logprobs) - 1e-6)
            if params.temperature == 0:
                assert top.token_ids[:, 0].tolist() == seq.tokens
                np.testing.assert_allclose(top.logprobs[:, 0], seq.logprobs, atol=1e-6)
            assert seq.topk_logprobs is not None and len(seq.topk_logprobs) == len(seq.tokens)
            assert seq.topk_logprobs[0] == list(
                zip(top.token_ids[0].tolist(), top.logprobs[0].tolist(), strict=True)
            )
        # Every entry is the model's logprob of that token after that prefix.
        seq = out.sequences[1]
        base = prompt.to_ints()
        prefixes = [
            base + seq.tokens[:t] + [int(v)]
            for t in range(len(seq.tokens))
            for v in seq.topk_logprobs_np.token_ids[t]
        ]
        expected = np.asarray(_scored(sampler, prefixes)).reshape(len(seq.tokens), k)
        np.testing.assert_allclose(seq.topk_logprobs_np.logprobs, expected, atol=_tol(target))


def test_topk_prompt_logprobs(sampler, tokenizer, target):
    prompt = _prompt(tokenizer)
    tokens = prompt.to_ints()
    k = 3
    out = sampler.sample(
        prompt,
        1,
        types.SamplingParams(max_tokens=1),
        include_prompt_logprobs=True,
        topk_prompt_logprobs=k,
    ).result()
    top = out.topk_prompt_logprobs_np
    assert top is not None and top.token_ids.shape == (len(tokens), k)
    assert top.token_ids[0].tolist() == [0] * k and top.logprobs[0].tolist() == [MASK] * k
    assert out.topk_prompt_logprobs is not None and out.topk_prompt_logprobs[0] is None
    assert all(len(row) == k for row in out.topk_prompt_logprobs[1:])
    _assert_topk_rows(top.token_ids[1:], top.logprobs[1:], k)
    prompt_lp = out.prompt_logprobs_np
    assert prompt_lp is not None
    assert np.all(top.logprobs[1:, 0] >= prompt_lp[1:] - 1e-6)
    for p in range(1, len(tokens)):
        row = top.token_ids[p].tolist()
        if tokens[p] in row:
            assert abs(top.logprobs[p, row.index(tokens[p])] - prompt_lp[p]) <= _tol(target)
    prefixes = [[*tokens[:p], int(v)] for p in range(1, len(tokens)) for v in top.token_ids[p]]
    expected = np.asarray(_scored(sampler, prefixes)).reshape(len(tokens) - 1, k)
    np.testing.assert_allclose(top.logprobs[1:], expected, atol=_tol(target))


def test_topk_prompt_logprobs_honour_last_n(sampler, tokenizer, target):
    prompt = _prompt(tokenizer, "Once upon a time")
    length, k, last_n = prompt.length, 2, 3

    def run(last):
        return sampler.sample(
            prompt,
            1,
            types.SamplingParams(max_tokens=1),
            include_prompt_logprobs=True,
            topk_prompt_logprobs=k,
            prompt_logprobs_last_n=last,
        ).result()

    full, tail = run(None), run(last_n)
    assert tail.topk_prompt_logprobs is not None
    assert tail.topk_prompt_logprobs[: length - last_n] == [None] * (length - last_n)
    assert tail.prompt_logprobs is not None
    assert tail.prompt_logprobs[: length - last_n] == [None] * (length - last_n)
    scored_tail = tail.topk_prompt_logprobs_np
    assert scored_tail is not None and full.topk_prompt_logprobs_np is not None
    assert np.all(scored_tail.logprobs[: length - last_n] == MASK)
    np.testing.assert_array_equal(
        scored_tail.token_ids[-last_n:], full.topk_prompt_logprobs_np.token_ids[-last_n:]
    )
    np.testing.assert_allclose(
        scored_tail.logprobs[-last_n:],
        full.topk_prompt_logprobs_np.logprobs[-last_n:],
        atol=_tol(target),
    )


def test_topk_widths_out_of_range_are_refused(sampler, tokenizer):
    prompt = _prompt(tokenizer)
    params = types.SamplingParams(max_tokens=1)
    for kwargs in (
        {"topk_sample_logprobs": -1},
        {"topk_prompt_logprobs": -2},
        {"topk_prompt_logprobs": 10**7},
        {"topk_sample_logprobs": 10**7},
        {"prompt_alt_tokens_k": 10**7},
    ):
        with pytest.raises(tinker.RequestFailedError) as info:
            sampler.sample(prompt, 1, params, **kwargs).result()
        name = next(iter(kwargs))
        assert name in str(info.value)


# --- target prompt logprobs -------------------------------------------------------------


def _target_ids(tokens: list[int], width: int) -> np.ndarray:
    """Row i: the actual next token prompt[i + 1], then -1s, and the first prompt token
    in the last column of every other row."""
    ids = np.full((len(tokens) - 1, width), -1, dtype=np.int64)
    ids[:, 0] = tokens[1:]
    ids[::2, -1] = tokens[0]
    return ids


def test_target_prompt_logprobs_dense(sampler, tokenizer, target):
    prompt = _prompt(tokenizer)
    tokens = prompt.to_ints()
    ids = _target_ids(tokens, 3)
    ids[0, :] = -1  # "rows before the first one that names an id are not scored"
    out = sampler.sample(
        prompt,
        1,
        types.SamplingParams(max_tokens=1),
        include_prompt_logprobs=True,
        target_prompt_logprobs=types.TensorData.from_numpy(ids),
    ).result()
    got = out.target_prompt_logprobs
    assert got is not None and got.dtype == "float32" and got.shape == list(ids.shape)
    assert got.sparse_crow_indices is None
    values = got.to_numpy()
    assert values.shape == ids.shape
    assert np.all(values[ids == -1] == 0.0)
    assert out.prompt_logprobs_np is not None
    np.testing.assert_allclose(values[1:, 0], out.prompt_logprobs_np[2:], atol=_tol(target))
    rows = [i for i in range(len(ids)) if ids[i, -1] >= 0]
    expected = _scored(sampler, [[*tokens[: i + 1], tokens[0]] for i in rows])
    np.testing.assert_allclose(values[rows, -1], expected, atol=_tol(target))


def test_target_prompt_logprobs_sparse_stays_sparse(sampler, tokenizer, target):
    prompt = _prompt(tokenizer, "Once upon a time")
    tokens = prompt.to_ints()
    ids = _target_ids(tokens, 8)
    rows, cols = np.nonzero(ids >= 0)
    crow = np.searchsorted(rows, np.arange(len(ids) + 1)).tolist()
    sparse = types.TensorData(
        data=ids[rows, cols],
        dtype="int64",
        shape=list(ids.shape),
        sparse_crow_indices=crow,
        sparse_col_indices=cols.tolist(),
    )
    out = sampler.sample(
        prompt,
        1,
        types.SamplingParams(max_tokens=1),
        include_prompt_logprobs=True,
        target_prompt_logprobs=sparse,
    ).result()
    got = out.target_prompt_logprobs
    assert got is not None and got.dtype == "float32" and got.shape == list(ids.shape)
    assert got.sparse_crow_indices == crow and got.sparse_col_indices == cols.tolist()
    values = got.to_numpy()  # unlisted cells densify as 0.0
    assert np.all(values[ids == -1] == 0.0)
    assert out.prompt_logprobs_np is not None
    np.testing.assert_allclose(values[:, 0], out.prompt_logprobs_np[1:], atol=_tol(target))
    dense = sampler.sample(
        prompt,
        1,
        types.SamplingParams(max_tokens=1),
        target_prompt_logprobs=types.TensorData.from_numpy(ids),
    ).result()
    assert dense.target_prompt_logprobs is not None
    np.testing.assert_allclose(values, dense.target_prompt_logprobs.to_numpy(), atol=1e-6)


def test_bad_target_prompt_logprobs_are_refused(sampler, tokenizer):
    prompt = _prompt(tokenizer)
    length = prompt.length
    params = types.SamplingParams(max_tokens=1)
    refused = {
        "rows": np.zeros((length, 2), dtype=np.int64),  # one row too many
        "no id": np.full((length - 1, 2), -1, dtype=np.int64),
        "vocab": np.full((length - 1, 1), 10**8, dtype=np.int64),
    }
    for why, ids in refused.items():
        with pytest.raises(tinker.RequestFailedError) as info:
            sampler.sample(
                prompt, 1, params, target_prompt_logprobs=types.TensorData.from_numpy(ids)
            ).result()
        assert "target_prompt_logprobs" in str(info.value), why
    # Checked by the SDK before sending: the dtype and the number of dimensions.
    with pytest.raises(ValueError, match="2-D"):
        sampler.sample(
            prompt,
            1,
            params,
            target_prompt_logprobs=types.TensorData.from_numpy(np.zeros(3, np.int64)),
        )
    with pytest.raises(ValueError, match="int64"):
        floats = np.zeros((length - 1, 1), dtype=np.float32)
        sampler.sample(
            prompt, 1, params, target_prompt_logprobs=types.TensorData.from_numpy(floats)
        )


# --- prompt alternative tokens ----------------------------------------------------------


def _alternatives(sampler, prompt, k, temperature, seed, **kwargs):
    params = types.SamplingParams(max_tokens=1, temperature=temperature, seed=seed)
    return sampler.sample(prompt, 1, params, prompt_alt_tokens_k=k, **kwargs).result()


def test_prompt_alt_tokens(sampler, tokenizer, target):
    prompt = _prompt(tokenizer, "Once upon a time")
    length, k = prompt.length, 6
    out = _alternatives(sampler, prompt, k, 1.0, 5, topk_prompt_logprobs=20)
    alt = out.prompt_alt_tokens
    assert alt is not None
    assert alt.tokens.dtype == "int64" and alt.logprobs.dtype == "float32"
    assert alt.tokens.shape == alt.logprobs.shape == [length - 1, k]
    drawn, drawn_lp = alt.tokens.to_numpy(), alt.logprobs.to_numpy()
    assert drawn.shape == (length - 1, k) and len(np.unique(drawn)) > k  # not all the same
    # Their logprobs are the model's (temperature 1): the top-k values of the same ids...
    top = out.topk_prompt_logprobs_np
    assert top is not None
    checked = 0
    for i in range(length - 1):
        row = dict(zip(top.token_ids[i + 1].tolist(), top.logprobs[i + 1].tolist(), strict=True))
        for token, lp in zip(drawn[i].tolist(), drawn_lp[i].tolist(), strict=True):
            if token in row:
                assert abs(row[token] - lp) <= _tol(target)
                checked += 1
    assert checked > 0
    # ...and the target prompt logprobs of the same ids, every one of them.
    scored = sampler.sample(
        prompt,
        1,
        types.SamplingParams(max_tokens=1),
        target_prompt_logprobs=types.TensorData.from_numpy(drawn),
    ).result()
    assert scored.target_prompt_logprobs is not None
    np.testing.assert_allclose(drawn_lp, scored.target_prompt_logprobs.to_numpy(), atol=1e-6)
    # The seed reproduces them; another seed draws others.
    again = _alternatives(sampler, prompt, k, 1.0, 5).prompt_alt_tokens
    other = _alternatives(sampler, prompt, k, 1.0, 6).prompt_alt_tokens
    assert again is not None and other is not None
    np.testing.assert_array_equal(again.tokens.to_numpy(), drawn)
    assert not np.array_equal(other.tokens.to_numpy(), drawn)


def test_prompt_alt_tokens_at_temperature_zero_are_the_argmax(sampler, tokenizer):
    prompt = _prompt(tokenizer)
    out = _alternatives(sampler, prompt, 3, 0.0, None, topk_prompt_logprobs=1)
    alt, top = out.prompt_alt_tokens, out.topk_prompt_logprobs_np
    assert alt is not None and top is not None
    argmax = top.token_ids[1:, 0].astype(np.int64)
    np.testing.assert_array_equal(alt.tokens.to_numpy(), np.repeat(argmax[:, None], 3, axis=1))
    np.testing.assert_allclose(
        alt.logprobs.to_numpy(), np.repeat(top.logprobs[1:, :1], 3, axis=1), atol=1e-6
    )


# --- sequence ids -----------------------------------------------------------------------


def test_every_sequence_has_its_own_id(sampler, tokenizer):
    params = types.SamplingParams(max_tokens=2, temperature=1.0, seed=0)
    first = sampler.sample(_prompt(tokenizer), 3, params).result()
    second = sampler.sample(_prompt(tokenizer), 3, params).result()
    ids = [s.sequence_id for s in (*first.sequences, *second.sequences)]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 6
