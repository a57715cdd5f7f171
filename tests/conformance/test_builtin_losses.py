"""The seven built-in losses: loss:sum against numpy references of the documented formulas
(tinkerkit's stated offline choices where the service's are not public), gradient
directions, per-token clip thresholds, RL weights, string config values, (N, K) targets,
and stable_reinforce's provenance against the sequences recorded at sampling time.

Assertions on offline choices (docs/backends.md) are skipped on the real service.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tinker import RequestFailedError, types

from tests.conformance.helpers import logprobs, qa_datums, rl_datum
from tests.conformance.loss_references import (
    arrays,
    assert_loss,
    cookbook_datum,
    reference_terms,
    sample_rollouts,
    sft_on,
    stable_reinforce_terms,
    td,
)


def _offline(target) -> bool:
    return target.backend != "tinker"


def _rl_data(training, tokenizer, *, spread=0.5, seed=0, **extra):
    """RL datums on the QA completions: sampling logprobs a noisy copy of the current ones."""
    data = qa_datums(tokenizer)[:2]
    current = logprobs(training.forward(data, "cross_entropy").result())
    rng = np.random.default_rng(seed)
    out = []
    for d, lp in zip(data, current, strict=True):
        q = lp + rng.normal(0, spread, lp.shape)
        datum = rl_datum(d, q, rng.normal(0, 1, lp.shape))
        more = {k: td(f(lp.shape[0], rng)) for k, f in extra.items()}
        out.append(dataclasses.replace(datum, loss_fn_inputs={**datum.loss_fn_inputs, **more}))
    return out


def _check(training, data, loss, config=None, reference_config=None):
    out = training.forward(data, loss, config).result()
    lps = logprobs(out)
    terms = [
        reference_terms(loss, lp, d, reference_config or config)
        for d, lp in zip(data, lps, strict=True)
    ]
    assert_loss(out, terms)
    return out


def _ratio_mask(n, rng):
    return (np.arange(n) >= n // 3).astype(np.float32)


RL_CASES = [
    ("importance_sampling", None),
    ("ppo", None),
    ("ppo", {"clip_low_threshold": 0.6, "clip_high_threshold": 1.5}),
    ("cispo", None),
    ("cispo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}),
    ("dro", None),
    ("dro", {"beta": 0.5}),
    ("gspo", None),
    ("gspo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}),
]


@pytest.mark.parametrize(
    ("loss", "config"), RL_CASES, ids=[f"{n}-{'explicit' if c else 'default'}" for n, c in RL_CASES]
)
def test_rl_loss_matches_reference(training, tokenizer, target, loss, config):
    if config is None and loss in ("dro", "gspo") and not _offline(target):
        pytest.skip("the service's default is not public")
    extra = {"sequence_ratio_mask": _ratio_mask} if loss == "gspo" else {}
    data = _rl_data(training, tokenizer, spread=0.02 if loss == "gspo" else 0.5, **extra)
    out = _check(training, data, loss, config)
    for datum, o in zip(data, out.loss_fn_outputs, strict=True):
        assert o["logprobs"].to_numpy().shape == (datum.model_input.length,)
        if _offline(target):
            assert set(o) == {"logprobs"}  # the documented output only


def test_cispo_default_clip_is_zero_to_four(training, tokenizer):
    """A ratio of 3 is not clipped, 5 is (to 4), 0.1 is not (the lower bound is off)."""
    data = qa_datums(tokenizer)[:2]
    current = logprobs(training.forward(data, "cross_entropy").result())
    rl = []
    for d, lp in zip(data, current, strict=True):
        ratio = np.resize([3.0, 5.0, 0.1], lp.shape)
        rl.append(rl_datum(d, lp - np.log(ratio), np.resize([1.0, -1.0], lp.shape)))
    out = training.forward(rl, "cispo").result()
    lps = logprobs(out)
    coeff = [np.resize([3.0, 4.0, 0.1], lp.shape) for lp in lps]
    adv = [arrays(d)["advantages"] for d in rl]
    assert_loss(out, [-c * lp * a for c, lp, a in zip(coeff, lps, adv, strict=True)])
    ppo_style = [np.clip(np.resize([3.0, 5.0, 0.1], lp.shape), 0.8, 1.2) for lp in lps]
    other = -sum(float((c * lp * a).sum()) for c, lp, a in zip(ppo_style, lps, adv, strict=True))
    assert out.metrics["loss:sum"] != pytest.approx(other, rel=1e-3)


@pytest.mark.parametrize("loss", ["ppo", "cispo", "gspo"])
def test_per_token_clip_thresholds_override_the_config(training, tokenizer, target, loss):
    if not _offline(target):
        pytest.skip("per-token clip tensors are an offline reading of the SDK's dtype table")

    def low(n, rng):
        return rng.uniform(0.5, 0.99, n)

    def high(n, rng):
        return rng.uniform(1.01, 1.6, n)

    extra = {"clip_low_threshold": low, "clip_high_threshold": high}
    if loss == "gspo":
        extra["sequence_ratio_mask"] = _ratio_mask
    data = _rl_data(training, tokenizer, spread=0.5, **extra)
    config = {"clip_low_threshold": 0.97, "clip_high_threshold": 1.03}
    out = _check(training, data, loss, config)
    # The reference took the per-token tensors; without them the config's bounds give
    # another loss.
    plain = [
        dataclasses.replace(
            d,
            loss_fn_inputs={k: v for k, v in d.loss_fn_inputs.items() if not k.startswith("clip")},
        )
        for d in data
    ]
    assert training.forward(plain, loss, config).result().metrics["loss:sum"] != pytest.approx(
        out.metrics["loss:sum"], rel=1e-4
    )


@pytest.mark.parametrize("loss", ["importance_sampling", "ppo", "cispo", "dro", "gspo"])
def test_rl_weights_scale_the_loss(training, tokenizer, target, loss):
    if not _offline(target):
        pytest.skip("weights on RL losses are an offline choice")
    extra = {"sequence_ratio_mask": _ratio_mask} if loss == "gspo" else {}
    unweighted = _rl_data(training, tokenizer, **extra)
    base = training.forward(unweighted, loss).result().metrics["loss:sum"]

    def with_weights(fn):
        return [
            dataclasses.replace(
                d,
                loss_fn_inputs={
                    **d.loss_fn_inputs,
                    "weights": td(fn(d.model_input.length)),
                },
            )
            for d in unweighted
        ]

    doubled = training.forward(with_weights(lambda n: np.full(n, 2.0)), loss).result()
    assert doubled.metrics["loss:sum"] == pytest.approx(2 * base, rel=1e-5)
    rng = np.random.default_rng(1)
    _check(
        training, with_weights(lambda n: rng.uniform(0, 2, n) * (rng.uniform(size=n) > 0.3)), loss
    )


def test_config_values_may_be_numeric_strings(training, tokenizer, target):
    data = _rl_data(training, tokenizer)
    numbers = {"clip_low_threshold": 0.5, "clip_high_threshold": 2.0}
    strings = {"clip_low_threshold": "0.5", "clip_high_threshold": "2"}
    a = training.forward(data, "ppo", numbers).result().metrics["loss:sum"]
    b = training.forward(data, "ppo", strings).result().metrics["loss:sum"]
    assert a == pytest.approx(b, rel=1e-6)
    with pytest.raises(RequestFailedError) as info:
        training.forward(data, "ppo", {"clip_low_threshold": "wide"}).result()
    if _offline(target):
        assert "clip_low_threshold" in str(info.value) and "'wide'" in str(info.value)


def test_custom_loss_id_is_refused_offline(training, tokenizer, target):
    if not _offline(target):
        pytest.skip("the service runs stored custom losses")
    with pytest.raises(RequestFailedError) as info:
        training.forward(qa_datums(tokenizer), "custom", {"loss_id": "my-loss"}).result()
    assert "forward_backward_custom" in str(info.value)


# --- gradient directions ------------------------------------------------------------------


def _sampled_logprob_sum(training, data, prompt):
    ce = [sft_on(d, prompt) for d in data]
    lps = logprobs(training.forward(ce, "cross_entropy").result())
    return sum(float(lp[prompt.length - 1 :].sum()) for lp in lps)


@pytest.mark.parametrize(
    "loss", ["importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce"]
)
def test_positive_advantage_raises_the_sampled_tokens_logprobs(training, tokenizer, target, loss):
    prompt, sequences = sample_rollouts(training, tokenizer, n=2)
    data = [cookbook_datum(prompt, seq, 1.0, loss) for seq in sequences]
    before = _sampled_logprob_sum(training, data, prompt)
    training.forward_backward(data, loss).result()
    training.optim_step(types.AdamParams(learning_rate=target.learning_rate)).result()
    assert _sampled_logprob_sum(training, data, prompt) > before + 1e-3


# --- gspo and stable_reinforce on the cookbook's rollouts ----------------------------------


def _off_policy(training, tokenizer, target, loss, advantages=(1.0, -1.0, 0.5, -0.5)):
    """Cookbook datums of 4 rollouts, then 3 SFT steps on them: the policy moves away
    from the sampler (ratios well above 1)."""
    prompt, sequences = sample_rollouts(training, tokenizer)
    data = [cookbook_datum(prompt, s, a, loss) for s, a in zip(sequences, advantages, strict=True)]
    for _ in range(3):
        training.forward_backward([sft_on(d, prompt) for d in data], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=target.learning_rate))
    return prompt, sequences, data


@pytest.mark.parametrize("config", [None, {"clip_low_threshold": 0.5, "clip_high_threshold": 1.5}])
def test_gspo_with_the_cookbook_ratio_mask(training, tokenizer, target, config):
    if config is None and not _offline(target):
        pytest.skip("the service's GSPO default clip is not public")
    _, _, data = _off_policy(training, tokenizer, target, "gspo")
    _check(training, data, "gspo", config)


@pytest.mark.parametrize("config", [None, {"kl_coeff": 0.1}])
def test_stable_reinforce_matches_the_stated_formula(training, tokenizer, target, config):
    prompt, sequences, data = _off_policy(training, tokenizer, target, "stable_reinforce")
    out = training.forward_backward(data, "stable_reinforce", config).result()
    if not _offline(target):
        return  # the service's objective is not public
    lps = logprobs(out)
    kl = (config or {}).get("kl_coeff", 0.0)
    q = [np.asarray(s.logprobs, dtype=np.float64) for s in sequences]
    terms = [stable_reinforce_terms(lp, d, qs, kl) for lp, d, qs in zip(lps, data, q, strict=True)]
    assert_loss(out, terms)
    # The SFT steps pushed some ratios past the cap, so the truncation mattered.
    ratios = np.concatenate(
        [np.exp(lp[prompt.length - 1 :] - qs) for lp, qs in zip(lps, q, strict=True)]
    )
    assert ratios.max() > 2.0, ratios


def _prompt_advantage(datum):
    x = arrays(datum)
    x["advantages"][0] = 0.5  # a prompt row
    return dataclasses.replace(
        datum, loss_fn_inputs={**datum.loss_fn_inputs, "advantages": td(x["advantages"])}
    )


def _wrong_token(datum):
    x = arrays(datum)
    x["target_tokens"][-1] = (int(x["target_tokens"][-1]) + 1) % 200
    return dataclasses.replace(
        datum,
        loss_fn_inputs={**datum.loss_fn_inputs, "target_tokens": td(x["target_tokens"], np.int64)},
    )


def _unknown_id(datum):
    def rename(spans):
        return [dataclasses.replace(s, sequence_id="no-such-sequence") for s in spans]

    return dataclasses.replace(
        datum,
        model_input_spans=rename(datum.model_input_spans),
        loss_fn_input_spans=rename(datum.loss_fn_input_spans),
    )


def _no_provenance(datum):
    return types.Datum(model_input=datum.model_input, loss_fn_inputs=datum.loss_fn_inputs)


BROKEN = {
    "no-provenance": (_no_provenance, ["data[0]", "provenance", "record_stability_info"]),
    "unknown-id": (_unknown_id, ["data[0]", "'no-such-sequence'", "not recorded"]),
    "prompt-advantage": (
        _prompt_advantage,
        ["data[0]", "only accepts nonzero advantages on sampled tokens"],
    ),
    "wrong-token": (_wrong_token, ["data[0]", "SampledProvenanceSpan", "target_tokens["]),
}


@pytest.mark.parametrize("problem", list(BROKEN))
def test_stable_reinforce_refuses_bad_provenance(training, tokenizer, target, problem):
    prompt, sequences = sample_rollouts(training, tokenizer, n=1)
    datum = cookbook_datum(prompt, sequences[0], 1.0, "stable_reinforce")
    breaks, words = BROKEN[problem]
    with pytest.raises(RequestFailedError) as info:
        training.forward_backward([breaks(datum)], "stable_reinforce").result()
    if _offline(target):
        for word in words:
            assert word in str(info.value), str(info.value)
    # The client keeps working, and the intact datum trains.
    assert np.isfinite(
        training.forward_backward([datum], "stable_reinforce").result().metrics["loss:sum"]
    )


def test_stable_reinforce_needs_sequences_sampled_with_recording(training, tokenizer, target):
    prompt, sequences = sample_rollouts(training, tokenizer, n=1, record=False)
    datum = cookbook_datum(prompt, sequences[0], 1.0, "stable_reinforce")
    with pytest.raises(RequestFailedError) as info:
        training.forward([datum], "stable_reinforce").result()
    if _offline(target):
        assert sequences[0].sequence_id in str(info.value)


# --- (N, K) targets -----------------------------------------------------------------------


def _topk(datum, k, seed, *, soft=False):
    """(N, K) targets: column 0 the datum's own targets, the others tokens of its input.
    ``soft``: the cookbook's top-K distillation layout — prompt rows token 0 / weight 0,
    completion rows weighted by a random teacher distribution over the K slots."""
    rng = np.random.default_rng(seed)
    x = arrays(datum)
    targets = x["target_tokens"].astype(np.int64)
    n = targets.shape[0]
    pool = np.asarray(datum.model_input.to_ints(), dtype=np.int64)
    tokens = np.concatenate([targets[:, None], rng.choice(pool, (n, k - 1))], axis=1)
    weights = np.ones((n, k))
    if soft:
        logits = rng.normal(0, 1.5, (n, k))
        weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        completion = x["weights"] != 0
        tokens[~completion] = 0
        weights[~completion] = 0.0
    return types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": td(tokens, np.int64), "weights": td(weights)},
    )


def test_topk_targets_return_full_vocabulary_logprobs(training, tokenizer, target):
    data = qa_datums(tokenizer)[:2]
    topk = [_topk(d, 3, seed=i) for i, d in enumerate(data)]
    out = training.forward(topk, "cross_entropy").result()
    lps = logprobs(out)
    assert_loss(out, [-arrays(d)["weights"] * lp for d, lp in zip(topk, lps, strict=True)])
    for d, lp in zip(topk, lps, strict=True):
        assert lp.shape == (d.model_input.length, 3)
        assert np.all(np.exp(lp).sum(axis=1) < 1.0)  # not renormalised over the K
        columns = arrays(d)["target_tokens"].astype(np.int64)
        for k in range(3):
            single = types.Datum(
                model_input=d.model_input,
                loss_fn_inputs={"target_tokens": td(columns[:, k], np.int64)},
            )
            ref = logprobs(training.forward([single], "cross_entropy").result())[0]
            np.testing.assert_allclose(lp[:, k], ref, atol=1e-5)
    # Columns k > 0 against the sampler's logprob of that token after the same prefix.
    sampler = training.save_weights_and_get_sampling_client().result()
    tokens = data[0].model_input.to_ints()
    columns = arrays(topk[0])["target_tokens"].astype(np.int64)
    for t in (2, len(tokens) - 1):
        for k in (1, 2):
            prefix = types.ModelInput.from_ints([*tokens[: t + 1], int(columns[t, k])])
            expected = sampler.compute_logprobs(prefix).result()[-1]
            assert lps[0][t, k] == pytest.approx(expected, abs=target.logprob_tolerance)


def test_topk_over_the_whole_vocabulary_sums_to_one(training, tokenizer, target):
    if not _offline(target):
        pytest.skip("the offline tiny model's vocabulary")
    datum = qa_datums(tokenizer)[0]
    vocab = len(tokenizer)
    n = datum.model_input.length
    every = types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={"target_tokens": td(np.tile(np.arange(vocab), (n, 1)), np.int64)},
    )
    lp = logprobs(training.forward([every], "cross_entropy").result())[0]
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-4)


def test_sparse_topk_inputs_equal_dense_ones(training, tokenizer):
    torch = pytest.importorskip("torch")
    dense = [_topk(d, 4, seed=i, soft=True) for i, d in enumerate(qa_datums(tokenizer)[:2])]
    sparse = []
    for d in dense:
        x = arrays(d)
        s = types.Datum(
            model_input=d.model_input,
            loss_fn_inputs={
                "target_tokens": torch.tensor(x["target_tokens"].astype(np.int64)),
                "weights": torch.tensor(x["weights"].astype(np.float32)),
            },
        )
        assert s.loss_fn_inputs["weights"].sparse_crow_indices is not None  # the SDK chose CSR
        sparse.append(s)
    a = training.forward(dense, "cross_entropy").result()
    b = training.forward(sparse, "cross_entropy").result()
    assert a.metrics["loss:sum"] == pytest.approx(b.metrics["loss:sum"], rel=1e-6)
    for x, y in zip(logprobs(a), logprobs(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_topk_soft_target_step_reduces_the_weighted_loss(training, tokenizer, target):
    data = [_topk(d, 4, seed=i, soft=True) for i, d in enumerate(qa_datums(tokenizer))]
    adam = types.AdamParams(learning_rate=target.learning_rate)
    first = training.forward_backward(data, "cross_entropy").result()
    assert_loss(
        first, [-arrays(d)["weights"] * lp for d, lp in zip(data, logprobs(first), strict=True)]
    )
    training.optim_step(adam).result()
    for _ in range(4):
        training.forward_backward(data, "cross_entropy")
        training.optim_step(adam)
    after = training.forward(data, "cross_entropy").result().metrics["loss:sum"]
    assert after < 0.9 * first.metrics["loss:sum"], (first.metrics["loss:sum"], after)


def test_custom_loss_gets_topk_logprobs(make_client, tokenizer):
    torch = pytest.importorskip("torch")
    data = [_topk(d, 3, seed=i, soft=True) for i, d in enumerate(qa_datums(tokenizer)[:2])]
    builtin, custom = make_client(seed=11), make_client(seed=11)
    shapes = []

    def soft_ce(batch, lps):
        shapes.extend(tuple(lp.shape) for lp in lps)
        loss = sum(
            (-torch.tensor(arrays(d)["weights"], dtype=torch.float32) * lp).sum()
            for d, lp in zip(batch, lps, strict=True)
        )
        return loss, {}

    adam = types.AdamParams(learning_rate=1e-2)
    ref = builtin.forward_backward(data, "cross_entropy")
    builtin.optim_step(adam)
    out = custom.forward_backward_custom(data, soft_ce)
    custom.optim_step(adam)
    assert out.result().metrics["loss:sum"] == pytest.approx(
        ref.result().metrics["loss:sum"], rel=1e-5
    )
    assert shapes == [(d.model_input.length, 3) for d in data]
    a = logprobs(builtin.forward(data, "cross_entropy").result())
    b = logprobs(custom.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape == (x.shape[0], 3)
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_rl_losses_refuse_topk_targets(training, tokenizer, target):
    datum = _topk(qa_datums(tokenizer)[0], 2, seed=0)
    n = datum.model_input.length
    rl = types.Datum(
        model_input=datum.model_input,
        loss_fn_inputs={
            "target_tokens": datum.loss_fn_inputs["target_tokens"],
            "logprobs": td(np.zeros(n)),
            "advantages": td(np.ones(n)),
        },
    )
    with pytest.raises(RequestFailedError) as info:
        training.forward([rl], "importance_sampling").result()
    if _offline(target):
        assert "cross_entropy and custom losses" in str(info.value)
