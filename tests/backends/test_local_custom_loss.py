"""forward_backward_custom on `local`: the gradient equals direct autograd of the same loss."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinkerkit as tk  # noqa: E402
from tests.backends.test_local_engine import grads, padded_logprobs  # noqa: E402
from tests.engines import engine_of  # noqa: E402
from tinkerkit.backends.engine import EngineInput, EngineState, load  # noqa: E402
from tinkerkit.data import shifted_datum  # noqa: E402


def _loss(logprobs):
    """Nonlinear in the logprobs: a DPO-style margin term plus a squared term."""
    margin = logprobs[0].sum() - logprobs[1].sum()
    return -torch.nn.functional.logsigmoid(0.1 * margin) + 0.01 * sum(
        (lp**2).sum() for lp in logprobs
    )


def test_custom_loss_gradient_equals_autograd():
    service = tk.connect("local")
    training = service.create_lora_training_client(
        base_model="tinkerkit/tiny", rank=4, seed=0
    ).result()
    # Move B off zero so every LoRA tensor has a gradient.
    engine = engine_of(service, training)
    rng = np.random.default_rng(0)
    load(
        engine,
        EngineState(
            {
                k: v + rng.normal(0, 0.05, v.shape).astype(np.float32)
                for k, v in engine.state().weights.items()
            }
        ),
    )
    seqs = [rng.integers(0, 256, 12).tolist(), rng.integers(0, 256, 20).tolist()]
    data = [shifted_datum(s, [1.0] * len(s)) for s in seqs]

    out = training.forward_backward_custom(data, lambda d, lps: (_loss(lps), {})).result()
    ours = grads(engine)

    for p in engine.params.values():
        p.grad = None
    batch = [EngineInput(np.array(s[:-1]), np.array(s[1:])) for s in seqs]
    lp = padded_logprobs(engine, batch)
    direct = _loss([lp[i, : len(s) - 1] for i, s in enumerate(seqs)])
    direct.backward()
    theirs = grads(engine)

    assert out.metrics["loss:sum"] == pytest.approx(direct.item(), rel=1e-5)
    assert set(ours) == set(theirs) and ours
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-5, rtol=1e-4, err_msg=key)


def test_local_trains_a_model_from_a_local_hf_folder(tmp_path):
    """Any HF model folder works as base_model (here: the built-in base, exported)."""
    from tinker import types

    from tinkerkit.backends.local.models import export_base
    from tinkerkit.testing import prompt_completion_datum

    folder = export_base("tinkerkit/tiny", tmp_path / "tiny-hf")
    service = tk.connect("local")
    training = service.create_lora_training_client(base_model=str(folder), rank=4, seed=0).result()
    tok = training.get_tokenizer()
    data = [prompt_completion_datum(tok, "Q: colour of the sky?\nA:", " blue")]
    first = training.forward_backward(data, "cross_entropy")
    for _ in range(10):
        training.optim_step(types.AdamParams(learning_rate=1e-2))
        last = training.forward_backward(data, "cross_entropy")
    assert last.result().metrics["loss:sum"] < 0.5 * first.result().metrics["loss:sum"]
    assert training.get_info().model_name == str(folder)
