"""Training semantics: pipelining, ordering, accumulation (sum), losses, custom losses."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types

from tests.conformance.helpers import ce_loss, logprobs, qa_datums, rl_datum, weights


def test_pipelined_steps_halve_the_loss(training, tokenizer, target):
    data = qa_datums(tokenizer)
    adam = types.AdamParams(learning_rate=target.learning_rate)
    futures = []
    for _ in range(40):  # submitted back to back, nothing awaited in between
        futures.append(training.forward_backward(data, "cross_entropy"))
        training.optim_step(adam)
    losses = [f.result().metrics["loss:sum"] for f in futures]
    assert losses[-1] <= 0.5 * losses[0], losses


def test_loss_is_the_weighted_sum_of_logprobs(training, tokenizer):
    data = qa_datums(tokenizer)
    out = training.forward(data, "cross_entropy").result()
    assert out.metrics["loss:sum"] == pytest.approx(ce_loss(data, out), rel=1e-5)
    for datum, lp, o in zip(data, logprobs(out), out.loss_fn_outputs, strict=True):
        assert lp.shape == (datum.model_input.length,)
        assert np.all(lp <= 0)
        if "elementwise_loss" in o:
            np.testing.assert_allclose(
                o["elementwise_loss"].to_numpy(), -weights(datum) * lp, rtol=1e-5, atol=1e-6
            )


def test_forward_does_not_change_weights(training, tokenizer):
    data = qa_datums(tokenizer)
    before = logprobs(training.forward(data, "cross_entropy").result())
    training.forward(data, "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    after = logprobs(training.forward(data, "cross_entropy").result())
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_requests_apply_in_submission_order(training, tokenizer):
    data = qa_datums(tokenizer)
    before = training.forward(data, "cross_entropy")
    fb = training.forward_backward(data, "cross_entropy")
    step = training.optim_step(types.AdamParams(learning_rate=1e-2))
    after = training.forward(data, "cross_entropy")
    # The forward submitted after the step sees the updated weights...
    assert after.result().metrics["loss:sum"] < before.result().metrics["loss:sum"]
    # ...and the forward_backward submitted before it saw the old ones.
    assert fb.result().metrics["loss:sum"] == pytest.approx(before.result().metrics["loss:sum"])
    assert step.result() is not None


def test_gradients_accumulate_as_a_sum(make_client, tokenizer):
    data = qa_datums(tokenizer)
    split, joint = make_client(seed=3), make_client(seed=3)
    adam = types.AdamParams(learning_rate=1e-2)
    a = split.forward_backward(data[:2], "cross_entropy")
    b = split.forward_backward(data[2:], "cross_entropy")
    split.optim_step(adam)
    ab = joint.forward_backward(data, "cross_entropy")
    joint.optim_step(adam)
    total = a.result().metrics["loss:sum"] + b.result().metrics["loss:sum"]
    assert total == pytest.approx(ab.result().metrics["loss:sum"], rel=1e-5)
    after_split = logprobs(split.forward(data, "cross_entropy").result())
    after_joint = logprobs(joint.forward(data, "cross_entropy").result())
    for x, y in zip(after_split, after_joint, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_importance_sampling_and_ppo_match_reference(training, tokenizer):
    data = qa_datums(tokenizer)[:2]
    current = logprobs(training.forward(data, "cross_entropy").result())
    rng = np.random.default_rng(0)
    sampled = [lp + rng.normal(0, 0.3, lp.shape) for lp in current]
    advantages = [rng.normal(0, 1, lp.shape) for lp in current]
    rl = [rl_datum(d, q, a) for d, q, a in zip(data, sampled, advantages, strict=True)]
    ratio = [np.exp(lp - q.astype(np.float32)) for lp, q in zip(current, sampled, strict=True)]
    adv32 = [a.astype(np.float32) for a in advantages]

    is_out = training.forward(rl, "importance_sampling").result()
    expected_is = -sum(float((r * a).sum()) for r, a in zip(ratio, adv32, strict=True))
    assert is_out.metrics["loss:sum"] == pytest.approx(expected_is, rel=1e-4)

    ppo_out = training.forward(rl, "ppo").result()
    expected_ppo = -sum(
        float(np.minimum(r * a, np.clip(r, 0.8, 1.2) * a).sum())
        for r, a in zip(ratio, adv32, strict=True)
    )
    assert ppo_out.metrics["loss:sum"] == pytest.approx(expected_ppo, rel=1e-4)

    wide = training.forward(rl, "ppo", {"clip_low_threshold": 0.5, "clip_high_threshold": 2.0})
    expected_wide = -sum(
        float(np.minimum(r * a, np.clip(r, 0.5, 2.0) * a).sum())
        for r, a in zip(ratio, adv32, strict=True)
    )
    assert wide.result().metrics["loss:sum"] == pytest.approx(expected_wide, rel=1e-4)


def test_importance_sampling_on_policy_gradient_equals_weighted_cross_entropy(
    make_client, tokenizer
):
    """On-policy (q = current logprobs), d/dθ of -Σ r·A equals that of -Σ A·logp."""
    data = qa_datums(tokenizer)[:2]
    is_client, ce_client = make_client(seed=5), make_client(seed=5)
    current = logprobs(is_client.forward(data, "cross_entropy").result())
    advantages = [np.linspace(-1, 1, lp.shape[0]) for lp in current]
    rl = [rl_datum(d, q, a) for d, q, a in zip(data, current, advantages, strict=True)]
    ce = [
        types.Datum(
            model_input=d.model_input,
            loss_fn_inputs={
                "target_tokens": d.loss_fn_inputs["target_tokens"],
                "weights": types.TensorData.from_numpy(a.astype(np.float32)),
            },
        )
        for d, a in zip(data, advantages, strict=True)
    ]
    adam = types.AdamParams(learning_rate=1e-2)
    is_client.forward_backward(rl, "importance_sampling")
    is_client.optim_step(adam)
    ce_client.forward_backward(ce, "cross_entropy")
    ce_client.optim_step(adam)
    a = logprobs(is_client.forward(data, "cross_entropy").result())
    b = logprobs(ce_client.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_custom_loss_matches_builtin_cross_entropy(make_client, tokenizer):
    torch = pytest.importorskip("torch")
    data = qa_datums(tokenizer)
    builtin, custom = make_client(seed=7), make_client(seed=7)

    def weighted_nll(batch, lps):
        loss = sum(
            (-torch.tensor(weights(d), dtype=torch.float32) * lp).sum()
            for d, lp in zip(batch, lps, strict=False)
        )
        return loss, {"custom/nll:sum": loss.item()}

    adam = types.AdamParams(learning_rate=1e-2)
    ref = builtin.forward_backward(data, "cross_entropy")
    builtin.optim_step(adam)
    out = custom.forward_backward_custom(data, weighted_nll)
    custom.optim_step(adam)
    assert out.result().metrics["loss:sum"] == pytest.approx(
        ref.result().metrics["loss:sum"], rel=1e-5
    )
    assert out.result().metrics["custom/nll:sum"] == pytest.approx(
        ref.result().metrics["loss:sum"], rel=1e-5
    )
    a = logprobs(builtin.forward(data, "cross_entropy").result())
    b = logprobs(custom.forward(data, "cross_entropy").result())
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_failed_custom_loss_stops_the_client(training, tokenizer, target):
    """As the service: after a custom loss fails, queued and later requests are refused."""
    pytest.importorskip("torch")
    data = qa_datums(tokenizer)

    def broken(batch, lps):
        raise ValueError("my loss is broken")

    failed = training.forward_backward_custom(data, broken)
    queued = training.optim_step(types.AdamParams(learning_rate=1e-3))
    with pytest.raises(Exception, match="my loss is broken"):
        failed.result()
    with pytest.raises(Exception) as queued_error:
        queued.result()
    assert queued_error.value is not None
    with pytest.raises(RuntimeError, match="poisoned"):
        training.forward(data, "cross_entropy").result()
