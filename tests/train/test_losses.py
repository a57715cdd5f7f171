"""tk.losses against direct autograd implementations of their formulas, and DPO training."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinkerkit as tk  # noqa: E402
from tinkerkit.data import shifted_datum  # noqa: E402
from tinkerkit.train.losses import LossCheckError  # noqa: E402


def _data(rng, n=6):
    out = []
    for _ in range(n):
        length = int(rng.integers(3, 9))
        weights = (rng.random(length) > 0.3).astype(float)
        weights[-1] = 1.0
        out.append(shifted_datum(list(range(length + 1)), [0.0, *weights]))
    return out


def _inputs(rng, data):
    return [rng.uniform(-4, -0.05, d.model_input.length) for d in data]


def _direct_scores(data, lps):
    return torch.stack(
        [
            (torch.tensor(d.loss_fn_inputs["weights"].to_numpy(), dtype=torch.float64) * lp).sum()
            for d, lp in zip(data, lps, strict=True)
        ]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dpo_equals_direct_autograd(seed):
    rng = np.random.default_rng(seed)
    data = _data(rng)
    values, refs = _inputs(rng, data), _inputs(rng, data)
    beta = 0.3

    ours_in = [torch.tensor(v, requires_grad=True) for v in values]
    loss, metrics = tk.losses.dpo(refs, beta=beta)(data, ours_in)
    loss.backward()

    direct_in = [torch.tensor(v, requires_grad=True) for v in values]
    s = _direct_scores(data, direct_in)
    r = _direct_scores(data, [torch.tensor(x) for x in refs])
    logits = beta * ((s[0::2] - r[0::2]) - (s[1::2] - r[1::2]))
    expected = torch.mean(-torch.log(torch.sigmoid(logits)))
    expected.backward()

    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for a, b in zip(ours_in, direct_in, strict=True):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-5)
    assert metrics["accuracy"] == pytest.approx(float((logits > 0).double().mean()))


@pytest.mark.parametrize("seed", [0, 1])
def test_bradley_terry_equals_direct_autograd(seed):
    rng = np.random.default_rng(seed)
    data = _data(rng, 4)
    values = _inputs(rng, data)
    ours_in = [torch.tensor(v, requires_grad=True) for v in values]
    loss, _ = tk.losses.bradley_terry(scale=2.0)(data, ours_in)
    loss.backward()
    direct_in = [torch.tensor(v, requires_grad=True) for v in values]
    s = _direct_scores(data, direct_in)
    expected = torch.mean(-torch.log(torch.sigmoid(2.0 * (s[0::2] - s[1::2]))))
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for a, b in zip(ours_in, direct_in, strict=True):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), atol=1e-5)


def test_check_loss_accepts_good_and_catches_detached_losses():
    rng = np.random.default_rng(0)
    data = _data(rng, 4)
    report = tk.losses.check_loss(tk.losses.dpo(_inputs(rng, data)), data)
    assert report["max_abs_error"] < 1e-6

    def half_detached(batch, lps):
        return (lps[0] ** 2).sum() + (lps[1].detach() ** 2).sum() * lps[0].sum() / lps[
            0
        ].sum().detach(), {}

    with pytest.raises(LossCheckError, match="autograd gradient"):
        tk.losses.check_loss(half_detached, data)
    with pytest.raises(LossCheckError, match="not depend"):
        tk.losses.check_loss(lambda b, lps: (torch.tensor(1.0), {}), data)


def test_registry():
    @tk.losses.register("test_mean_nll")
    def mean_nll(scale=1.0):
        def fn(data, lps):
            loss = -scale * sum(lp.mean() for lp in lps)
            return loss, {"nll": loss.item()}

        return fn

    assert tk.losses.get("test_mean_nll") is mean_nll
    with pytest.raises(KeyError, match="no loss named"):
        tk.losses.get("nope")


def test_dpo_training_raises_held_out_margin_and_accuracy(tmp_path):
    import random

    rng = random.Random(0)
    good = ["Sure, happy to help with that.", "Of course! Here is a careful answer."]
    bad = ["No.", "Figure it out yourself."]
    topics = [
        "the weather",
        "my code",
        "a recipe",
        "the news",
        "homework",
        "a poem",
        "travel",
        "a letter",
        "my garden",
        "music",
        "shopping",
        "a speech",
    ]

    def pairs(ts):
        return [
            {
                "prompt": f"Can you help me with {t}?",
                "chosen": rng.choice(good),
                "rejected": rng.choice(bad),
            }
            for t in ts
        ]

    config = tk.preference.DPOConfig(
        data=pairs(topics[:8]) * 2,
        eval_data=pairs(topics[8:]),
        epochs=3,
        batch_size=4,
        learning_rate=5e-3,
        beta=0.1,
        rank=8,
        log_dir=tmp_path / "dpo",
        progress=False,
    )
    result = tk.preference.train_dpo(config, service=tk.connect("mock"))
    first, last = result.evals()[0], result.evals()[-1]
    assert first["step"] == 0 and last["step"] == result.steps == 12
    assert last["eval_margin"] > first["eval_margin"] + 10
    assert last["eval_accuracy"] >= 0.99 > first["eval_accuracy"]
    lines = (tmp_path / "dpo" / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(x)["name"] for x in lines] == ["final"]


def test_reward_model_learns_held_out_preferences(tmp_path):
    import random

    rng = random.Random(1)
    good = ["Sure, happy to help with that.", "Of course! Here is a careful answer."]
    bad = ["No.", "Figure it out yourself."]
    topics = [f"task {i}" for i in range(14)]
    pairs = [
        {
            "prompt": f"Can you help me with {t}?",
            "chosen": rng.choice(good),
            "rejected": rng.choice(bad),
        }
        for t in topics
    ]
    config = tk.preference.DPOConfig(
        data=pairs[:10],
        eval_data=pairs[10:],
        epochs=4,
        batch_size=5,
        learning_rate=5e-3,
        rank=8,
        log_dir=tmp_path / "rm",
        progress=False,
    )
    result = tk.preference.train_reward_model(config, service=tk.connect("mock"))
    first, last = result.evals()[0], result.evals()[-1]
    assert last["eval_accuracy"] == 1.0
    assert last["eval_margin"] > first["eval_margin"] + 1.0
    assert last["eval_loss"] < first["eval_loss"]
