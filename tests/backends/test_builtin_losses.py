"""The built-in losses' formulas and gradients against torch autograd, the engines'
(N, K) targets, config parsing, sparse inputs and the provenance/2-D wire round trip."""

from __future__ import annotations

import numpy as np
import pytest
from tinker import types

from tinkerkit.backends import losses
from tinkerkit.backends.engine import EngineInput, EngineState, LoraConfig, load
from tinkerkit.backends.mock.engine import MockFactory
from tinkerkit.backends.validation import dense_array
from tinkerkit.errors import InvalidDatumError, RequestError

torch = pytest.importorskip("torch")

N = 64


def _inputs(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logprobs and RL inputs whose ratios spread over both sides of every clip range."""
    rng = np.random.default_rng(seed)
    lp = -rng.uniform(0.05, 4.0, N)
    inputs = {
        "logprobs": lp - rng.normal(0.0, 0.6, N),
        "advantages": rng.normal(0.0, 1.0, N),
        "weights": rng.uniform(0.0, 2.0, N),
        "sequence_ratio_mask": (rng.uniform(size=N) < 0.7).astype(np.float64),
        losses.RECORDED_LOGPROBS: lp - rng.normal(0.0, 0.6, N),
        losses.SAMPLED: (rng.uniform(size=N) < 0.8).astype(np.float64),
    }
    return lp, inputs


# --- independent torch references, written from the tinker docs' formulas ----------------


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def _bounds(inputs, config):
    return (
        _t(inputs.get("clip_low_threshold", config["clip_low_threshold"])),
        _t(inputs.get("clip_high_threshold", config["clip_high_threshold"])),
    )


def ref_cross_entropy(lp, inputs, config):
    return -_t(inputs["weights"]) * lp


def ref_importance_sampling(lp, inputs, config):
    ratio = torch.exp(lp - _t(inputs["logprobs"]))
    return -_t(inputs["weights"]) * ratio * _t(inputs["advantages"])


def ref_ppo(lp, inputs, config):
    a = _t(inputs["advantages"])
    ratio = torch.exp(lp - _t(inputs["logprobs"]))
    low, high = _bounds(inputs, config)
    clipped = torch.minimum(torch.maximum(ratio, low), high)
    return -_t(inputs["weights"]) * torch.minimum(ratio * a, clipped * a)


def ref_cispo(lp, inputs, config):
    ratio = torch.exp(lp - _t(inputs["logprobs"]))
    low, high = _bounds(inputs, config)
    clipped = torch.minimum(torch.maximum(ratio, low), high)
    return -_t(inputs["weights"]) * clipped.detach() * lp * _t(inputs["advantages"])


def ref_dro(lp, inputs, config):
    quadratic = (lp - _t(inputs["logprobs"])) ** 2
    a = _t(inputs["advantages"])
    return -_t(inputs["weights"]) * (lp * a - 0.5 * config["beta"] * quadratic)


def ref_gspo(lp, inputs, config):
    # The docs' implementation: mean over the masked positions, GSPO-token ratio.
    in_ratio = _t(inputs["sequence_ratio_mask"]) != 0
    log_ratio = (lp.detach() - _t(inputs["logprobs"]))[in_ratio].mean()
    ratio = torch.exp(log_ratio + lp - lp.detach())
    low, high = _bounds(inputs, config)
    clipped = torch.minimum(torch.maximum(ratio, low), high)
    a = _t(inputs["advantages"])
    return -_t(inputs["weights"]) * torch.minimum(ratio * a, clipped * a)


def ref_stable_reinforce(lp, inputs, config):
    q = _t(inputs[losses.RECORDED_LOGPROBS])
    rho = torch.exp(lp.detach() - q).clamp(max=2.0)
    a, w = _t(inputs["advantages"]), _t(inputs["weights"])
    per_token = -rho * a * lp + 0.5 * config["kl_coeff"] * (lp - q) ** 2
    return torch.where(_t(inputs[losses.SAMPLED]) != 0, w * per_token, torch.zeros_like(lp))


REFERENCES = {
    "cross_entropy": ref_cross_entropy,
    "importance_sampling": ref_importance_sampling,
    "ppo": ref_ppo,
    "cispo": ref_cispo,
    "dro": ref_dro,
    "gspo": ref_gspo,
    "stable_reinforce": ref_stable_reinforce,
}

CASES = [
    ("cross_entropy", {}),
    ("importance_sampling", {}),
    ("ppo", {}),
    ("ppo", {"clip_low_threshold": 0.5, "clip_high_threshold": 1.6}),
    ("cispo", {}),
    ("cispo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}),
    ("dro", {}),
    ("dro", {"beta": 0.7}),
    ("gspo", {}),
    ("gspo", {"clip_low_threshold": 0.7, "clip_high_threshold": 1.3}),
    ("stable_reinforce", {}),
    ("stable_reinforce", {"kl_coeff": 0.3}),
]


def _check_against_autograd(name, lp, inputs, config):
    full = losses.check_config(name, config)
    loss, grad = losses.apply(name, lp, inputs, full)
    lp_t = _t(lp).requires_grad_(True)
    ref = REFERENCES[name](lp_t, inputs, full)
    ref.sum().backward()
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(grad, lp_t.grad.numpy(), rtol=1e-5, atol=1e-12)
    return loss, grad


@pytest.mark.parametrize(("name", "config"), CASES, ids=[f"{n}-{c or 'default'}" for n, c in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradient_match_autograd(name, config, seed):
    lp, inputs = _inputs(seed)
    _check_against_autograd(name, lp, inputs, config)


@pytest.mark.parametrize("name", ["ppo", "cispo", "gspo"])
def test_per_token_clip_tensors_match_autograd_and_override_the_config(name):
    lp, inputs = _inputs(3)
    rng = np.random.default_rng(3)
    low = rng.uniform(0.3, 0.99, N)
    high = low + rng.uniform(0.02, 1.0, N)
    per_token = {**inputs, "clip_low_threshold": low, "clip_high_threshold": high}
    config = {"clip_low_threshold": 0.95, "clip_high_threshold": 1.05}
    loss, _ = _check_against_autograd(name, lp, per_token, config)
    # ... and the config's bounds are not what was used.
    plain, _ = losses.apply(name, lp, inputs, losses.check_config(name, config))
    assert not np.allclose(loss, plain)


def test_clipped_losses_zero_the_gradient_only_where_the_clipped_branch_wins():
    lp = np.log(np.array([0.5, 0.5, 0.5, 0.5]))
    ratio = np.array([3.0, 3.0, 0.3, 1.0])
    inputs = {
        "logprobs": lp - np.log(ratio),
        "advantages": np.array([1.0, -1.0, -1.0, 1.0]),
        "weights": np.ones(4),
    }
    _, grad = losses.apply("ppo", lp, inputs, losses.check_config("ppo", None))
    # r=3, A>0: clipped (no gradient); r=3, A<0: unclipped wins; r=0.3, A<0: clipped.
    np.testing.assert_allclose(grad, [0.0, 3.0, 0.0, -1.0])
    _, grad = losses.apply("cispo", lp, inputs, losses.check_config("cispo", None))
    # cispo never zeroes a gradient: -clip(r, 0, 4) * A.
    np.testing.assert_allclose(grad, [-3.0, 3.0, 0.3, -1.0])


def test_defaults():
    assert losses.check_config("ppo", None) == {
        "clip_low_threshold": 0.8,
        "clip_high_threshold": 1.2,
    }
    assert losses.check_config("cispo", None) == {
        "clip_low_threshold": 0.0,
        "clip_high_threshold": 4.0,
    }
    gspo = losses.check_config("gspo", None)
    assert gspo["clip_low_threshold"] == pytest.approx(1 - 3e-4)
    assert gspo["clip_high_threshold"] == pytest.approx(1 + 4e-4)
    assert losses.check_config("dro", None) == {"beta": 0.05}
    assert losses.check_config("stable_reinforce", None) == {"kl_coeff": 0.0}
    assert losses.check_config("importance_sampling", None) == {}


def test_stable_reinforce_truncates_the_ratio_at_two():
    lp = np.log(np.array([0.5, 0.5, 0.5]))
    inputs = {
        "advantages": np.array([1.0, 1.0, 0.0]),
        "weights": np.ones(3),
        losses.RECORDED_LOGPROBS: lp - np.log([1.5, 5.0, 0.0 + 1.0]),
        losses.SAMPLED: np.array([1.0, 1.0, 0.0]),
    }
    loss, grad = losses.apply("stable_reinforce", lp, inputs, {})
    np.testing.assert_allclose(grad, [-1.5, -2.0, 0.0])
    np.testing.assert_allclose(loss, [-1.5 * lp[0], -2.0 * lp[1], 0.0])


# --- config parsing -------------------------------------------------------------------


def test_numeric_strings_are_numbers():
    assert losses.check_config(
        "ppo", {"clip_low_threshold": "0.5", "clip_high_threshold": " 2"}
    ) == {
        "clip_low_threshold": 0.5,
        "clip_high_threshold": 2.0,
    }
    assert losses.check_config("dro", {"beta": "1e-2"}) == {"beta": 0.01}


@pytest.mark.parametrize("value", ["abc", "", "nan", "inf", None, True, [0.1]])
def test_non_numbers_are_refused_naming_key_and_value(value):
    with pytest.raises(RequestError) as info:
        losses.check_config("dro", {"beta": value})
    assert "'beta'" in str(info.value) and repr(value) in str(info.value)


def test_bad_config_combinations_are_refused():
    with pytest.raises(RequestError, match=r"clip_low_threshold .* exceeds"):
        losses.check_config("ppo", {"clip_low_threshold": 1.5})
    with pytest.raises(RequestError, match="kl_coeff"):
        losses.check_config("stable_reinforce", {"kl_coeff": -1})
    with pytest.raises(RequestError, match="not used by 'importance_sampling'"):
        losses.check_config("importance_sampling", {"beta": 0.1})


def test_custom_loss_id_says_custom_losses_run_client_side():
    with pytest.raises(RequestError) as info:
        losses.get_loss("custom")
    message = str(info.value)
    assert "forward_backward_custom" in message and "loss_id" in message


def test_per_token_bounds_that_cross_are_refused_naming_the_position():
    inputs = {
        "advantages": np.zeros(3),
        "weights": np.ones(3),
        "clip_high_threshold": np.array([1.2, 0.5, 1.2]),
    }
    with pytest.raises(InvalidDatumError, match=r"data\[2\]: at position 1"):
        losses.check_inputs("ppo", 2, inputs, losses.check_config("ppo", None))


def test_empty_sequence_ratio_mask_is_refused():
    inputs = {"advantages": np.zeros(3), "weights": np.ones(3), "sequence_ratio_mask": np.zeros(3)}
    with pytest.raises(InvalidDatumError, match=r"data\[0\]: sequence_ratio_mask"):
        losses.check_inputs("gspo", 0, inputs, losses.check_config("gspo", None))


# --- (N, K) targets on the engines ----------------------------------------------------------


def _mock_engine():
    factory = MockFactory()
    return factory.create(factory.resolve("tinkerkit/tiny"), LoraConfig(rank=4, seed=0))


def _local_engine():
    pytest.importorskip("peft")
    from tinkerkit.backends.local.engine import LocalFactory

    factory = LocalFactory()
    engine = factory.create(factory.resolve("tinkerkit/tiny"), LoraConfig(rank=4, seed=0))
    rng = np.random.default_rng(7)
    load(
        engine,
        EngineState(
            {
                k: (rng.standard_normal(v.shape) * 0.1).astype(np.float32)
                for k, v in engine.state().weights.items()
            }
        ),
    )
    return engine


def _grads(engine) -> dict[str, np.ndarray]:
    if hasattr(engine, "grads"):  # mock
        out = {k: v.astype(np.float64) for k, v in engine.grads.items()}
        for g in engine.grads.values():
            g.fill(0.0)
        return out
    out = {}
    for k, p in engine.params.items():
        out[k] = p.grad.double().numpy().copy()
        p.grad = None
    return out


ENGINES = {"mock": _mock_engine, "local": _local_engine}


@pytest.mark.parametrize("which", list(ENGINES))
def test_topk_targets_are_full_vocabulary_logprobs_with_the_right_gradient(
    which, monkeypatch, tmp_path
):
    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = ENGINES[which]()
    vocab = engine.spec.vocab_size
    rng = np.random.default_rng(0)
    lengths, ks = [9, 5, 12], [3, 0, 5]
    batch = []
    for n, k in zip(lengths, ks, strict=True):
        tokens = rng.integers(0, vocab, n)
        targets = rng.integers(0, vocab, (n, k) if k else n)
        if k:
            targets[:, -1] = targets[:, 0]  # a duplicate slot: the gradient must add up
        batch.append(EngineInput(tokens, targets))
    fp = engine.forward(batch, grad=True)
    upstream = [rng.normal(0, 1, item.targets.shape) for item in batch]
    fp.backward(upstream)
    joint = _grads(engine)

    # Each column k equals a 1-D request with targets[:, k]; by linearity the gradient of
    # the (N, K) request is the sum of the 1-D requests' gradients.
    expected = {key: np.zeros_like(v) for key, v in joint.items()}
    for row, item in enumerate(batch):
        columns = item.targets.reshape(len(item.tokens), -1)
        assert fp.logprobs[row].shape == item.targets.shape
        for k in range(columns.shape[1]):
            single = engine.forward([EngineInput(item.tokens, columns[:, k])], grad=True)
            got = fp.logprobs[row].reshape(len(item.tokens), -1)[:, k]
            np.testing.assert_allclose(got, single.logprobs[0], rtol=1e-5, atol=1e-5)
            single.backward([upstream[row].reshape(len(item.tokens), -1)[:, k]])
            for key, g in _grads(engine).items():
                expected[key] += g
    for key in joint:
        np.testing.assert_allclose(joint[key], expected[key], rtol=1e-4, atol=1e-5)


def test_all_vocabulary_targets_normalise_to_one():
    engine = _mock_engine()
    vocab = engine.spec.vocab_size
    tokens = np.arange(10) % vocab
    targets = np.tile(np.arange(vocab), (10, 1))
    lp = engine.forward([EngineInput(tokens, targets)], grad=False).logprobs[0]
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(axis=1), 1.0, rtol=1e-4)


# --- sparse inputs and the wire ------------------------------------------------------------


def test_sparse_csr_inputs_decode_without_torch_to_the_dense_tensor():
    dense = np.zeros((6, 4), dtype=np.float32)
    dense[1, 2], dense[4, 0], dense[4, 3] = 0.5, 0.25, 0.25
    td = types.TensorData.from_torch_sparse(torch.from_numpy(dense))
    assert td.sparse_crow_indices is not None
    np.testing.assert_array_equal(dense_array(0, "weights", td), dense)
    broken = types.TensorData(
        data=np.array([1.0], np.float32),
        dtype="float32",
        shape=[2, 2],
        sparse_crow_indices=[0, 1],
        sparse_col_indices=[0],
    )
    with pytest.raises(InvalidDatumError, match="malformed sparse CSR"):
        dense_array(0, "weights", broken)


def test_provenance_and_sparse_tensors_survive_the_request_wire():
    from tinker.proto.request_conv import forward_backward_request_to_proto

    from tinkerkit.server.wire import parse_forward_backward

    targets = torch.zeros((5, 3), dtype=torch.long)
    targets[3:, 0] = torch.tensor([7, 8])
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4, 5]),
        loss_fn_inputs={"target_tokens": targets, "weights": (targets > 0).float()},
    ).with_provenance(
        model_input=[
            types.PromptProvenanceSpan(sequence_id="s:1", length=4),
            types.SampledProvenanceSpan(sequence_id="s:1", length=1),
        ],
        loss_fn_inputs=[
            types.PromptProvenanceSpan(sequence_id="s:1", offset=1, length=3),
            types.SampledProvenanceSpan(sequence_id="s:1", offset=0, length=2),
        ],
    )
    assert datum.loss_fn_inputs["target_tokens"].sparse_crow_indices is not None
    plain = types.Datum(
        model_input=types.ModelInput.from_ints([1]),
        loss_fn_inputs={"target_tokens": [2]},
    )
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(
            data=[datum, plain], loss_fn="cross_entropy", loss_fn_config={"beta": "0.5"}
        ),
        model_id="m",
        seq_id=1,
    )
    call = parse_forward_backward(forward_backward_request_to_proto(request).SerializeToString())
    got, got_plain = call.data
    assert got.model_input_spans == datum.model_input_spans
    assert got.loss_fn_input_spans == datum.loss_fn_input_spans
    assert got_plain.model_input_spans is None and got_plain.loss_fn_input_spans is None
    for key in ("target_tokens", "weights"):
        np.testing.assert_array_equal(
            dense_array(0, key, got.loss_fn_inputs[key]), datum.loss_fn_inputs[key].to_numpy()
        )
    assert call.loss_fn_config == {"beta": "0.5"}


def test_mixed_output_shapes_survive_the_response_wire():
    from tinker.proto.response_conv import deserialize_forward_backward_output

    from tinkerkit.server.wire import forward_backward_output_to_proto

    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(4,)),
        rng.normal(size=(3, 2)),
        rng.normal(size=(5, 2)),
        rng.normal(size=(2, 7)),
        rng.normal(size=(6,)),
    ]
    out = types.ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"logprobs": types.TensorData.from_numpy(a.astype(np.float32))} for a in arrays
        ],
        metrics={"loss:sum": 1.5},
    )
    back = deserialize_forward_backward_output(forward_backward_output_to_proto(out))
    assert back.metrics == {"loss:sum": 1.5}
    assert len(back.loss_fn_outputs) == len(arrays)
    for a, o in zip(arrays, back.loss_fn_outputs, strict=True):
        np.testing.assert_array_equal(o["logprobs"].to_numpy(), a.astype(np.float32))
