"""The optimizer chosen at creation (AdamW or Dimuon) on the numpy ``mock`` engine.

The Dimuon step is checked against an independent float64 reference written here
(SVD polar factor instead of Newton-Schulz); the torch twin is in test_dimuon_local.py.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from tinker import types
from tinker.types.optimizer import OptimizerConfigBase, OptimParamsBase

from tinkerkit.backends import optimizers
from tinkerkit.backends.engine import EngineInput, EngineState, LoraConfig, load, step
from tinkerkit.backends.mock import dimuon
from tinkerkit.backends.mock.dimuon import Dimuon
from tinkerkit.backends.mock.engine import MockEngine, MockFactory
from tinkerkit.errors import ConfigMismatchError, RequestError
from tinkerkit.models.registry import TINY

DIMUON = types.DimuonOptimizerConfig()


# --- an independent reference ---------------------------------------------------------


def reference_dimuon(
    weights: dict[str, np.ndarray],
    grad_steps: list[dict[str, np.ndarray]],
    hp: types.DimuonParams,
    rank: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Dimuon as docs/backends.md writes it, in float64, with the exact SVD polar factor."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    lr = hp.learning_rate * (32 / rank) ** 0.175
    for grads in grad_steps:
        norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
        scale = min(1.0, hp.grad_clip_norm / (norm + 1e-6)) if hp.grad_clip_norm > 0 else 1.0
        for k in w:
            m[k] = hp.beta1 * m[k] + (1 - hp.beta1) * scale * grads[k]
            q = m[k] ** 2
            row = q.mean(axis=1, keepdims=True) / q.mean()
            col = q.mean(axis=0, keepdims=True) / q.mean()
            p = m[k] / (row + 1e-4) ** 0.25 / (col + 1e-4) ** 0.25
            u, _, vt = np.linalg.svd(p, full_matrices=False)
            polar = u @ vt
            w[k] -= lr * np.sqrt(rank) * polar / np.linalg.norm(polar)
    return w, m


def random_problem(seed: int = 0, rank: int = 4, steps: int = 3):
    rng = np.random.default_rng(seed)
    shapes = {"A": (rank, 24), "B": (40, rank)}
    weights = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = [
        {
            k: (rng.standard_normal(s) * rng.uniform(0.2, 2.0, (s[0], 1))).astype(np.float32)
            for k, s in shapes.items()
        }
        for _ in range(steps)
    ]
    return weights, grads


def run_numpy(
    weights, grads, hp, rank
) -> tuple[dict[str, np.ndarray], list[dict[str, float]], Dimuon]:
    params = {k: v.copy() for k, v in weights.items()}
    opt = Dimuon(rank)
    metrics = [opt.step(params, g, hp) for g in grads]
    return params, metrics, opt


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("clip", [0.0, 5.0])
def test_dimuon_steps_match_the_reference(clip):
    weights, grads = random_problem()
    hp = types.DimuonParams(learning_rate=0.02, beta1=0.8, grad_clip_norm=clip)
    ours, metrics, opt = run_numpy(weights, grads, hp, rank=4)
    ref_w, ref_m = reference_dimuon(weights, grads, hp, rank=4)
    for k in weights:
        # the update (not the weights) to ~float32 precision
        assert rel(ours[k] - weights[k], ref_w[k] - weights[k]) < 1e-5, k
        assert rel(opt.m[k], ref_m[k]) < 1e-6, k
    assert opt.step_count == 3
    norms = [np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in s.values())) for s in grads]
    assert [m["grad_norm"] for m in metrics] == pytest.approx(norms, rel=1e-12)
    assert {m["learning_rate"] for m in metrics} == {0.02}


def test_first_update_has_frobenius_norm_lr_times_rank_factor_times_sqrt_rank():
    for rank, factor in [(4, 8**0.175), (32, 1.0), (128, 0.25**0.175)]:
        assert optimizers.rank_lr_factor(rank) == pytest.approx(factor, rel=1e-12)
        rng = np.random.default_rng(rank)
        w = {"W": rng.standard_normal((rank, 200)).astype(np.float32)}
        before = w["W"].copy()
        g = {"W": rng.standard_normal((rank, 200)).astype(np.float32)}
        Dimuon(rank).step(w, g, types.DimuonParams(learning_rate=0.01))
        step = np.linalg.norm((before - w["W"]).astype(np.float64))
        assert step == pytest.approx(0.01 * factor * np.sqrt(rank), rel=1e-5)
    assert optimizers.rank_lr_factor(8) == pytest.approx(1.2746, abs=1e-4)


@pytest.mark.parametrize(
    ("shape", "rank"), [((8, 64), 8), ((64, 8), 8), ((4, 4), 4), ((16, 300), 16)]
)
def test_direction_is_orthogonal_with_norm_sqrt_rank_and_ignores_scale(shape, rank):
    rng = np.random.default_rng(1)
    m = (rng.standard_normal(shape) * rng.uniform(0.1, 3.0, (shape[0], 1))).astype(np.float32)
    d = dimuon.direction(m, rank)
    assert d.dtype == np.float32
    assert np.linalg.norm(d.astype(np.float64)) == pytest.approx(np.sqrt(rank), rel=1e-6)
    # the polar factor of a full-rank matrix: every singular value the same
    s = np.linalg.svd(d.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, np.sqrt(rank / min(shape)), rtol=1e-5)
    # only the direction of the momentum matters, not its size
    for factor in (1e-6, 1e4):
        assert rel(dimuon.direction(m * np.float32(factor), rank), d) < 1e-5


def test_zero_momentum_gives_zero_update():
    w = {"A": np.ones((4, 8), np.float32), "B": np.ones((8, 4), np.float32)}
    g = {"A": np.zeros((4, 8), np.float32), "B": np.ones((8, 4), np.float32)}
    Dimuon(4).step(w, g, types.DimuonParams(learning_rate=0.1))
    assert np.array_equal(w["A"], np.ones((4, 8), np.float32))  # LoRA A at init: B = 0
    assert np.all(np.isfinite(w["B"])) and not np.array_equal(w["B"], np.ones((8, 4)))


def test_preconditioner_balances_rows_and_columns():
    m = np.ones((4, 6), np.float32)
    m[0] *= 100.0  # one loud row
    p = dimuon.precondition(m, 0.0)
    rows = np.sqrt((p.astype(np.float64) ** 2).mean(axis=1))
    # rows scaled by (r̂)^(-1/4): the loud row is 100^(1/2) = 10x louder, not 100x
    assert rows[0] / rows[1] == pytest.approx(10.0, rel=1e-5)
    # damping bounds the boost of an empty row: (0 + d)^(-1/4)
    m[1] = 0.0
    assert np.all(np.isfinite(dimuon.precondition(m, optimizers.DEFAULT_DAMPING)))


@pytest.mark.parametrize("clip", [1.0, -1.0, 0.0])
def test_clipping_scales_the_gradient_into_the_momentum(clip):
    g = {"W": np.full((2, 3), 2.0, np.float32)}  # global norm sqrt(24)
    opt = Dimuon(2)
    metrics = opt.step(
        {"W": np.zeros((2, 3), np.float32)},
        g,
        types.DimuonParams(learning_rate=0.1, beta1=0.5, grad_clip_norm=clip),
    )
    norm = np.sqrt(24.0)
    assert metrics["grad_norm"] == pytest.approx(norm)
    scale = clip / (norm + 1e-6) if clip > 0 else 1.0  # nonpositive disables clipping
    np.testing.assert_allclose(opt.m["W"], 0.5 * scale * g["W"], rtol=1e-6)


# --- the engines ----------------------------------------------------------------------


def mock_engine(optimizer: types.OptimizerConfig | None = None, seed: int = 0) -> MockEngine:
    factory = MockFactory()
    if optimizer is None:
        return factory.create(factory.resolve(TINY), LoraConfig(rank=8, seed=seed))
    return factory.create(factory.resolve(TINY), LoraConfig(rank=8, seed=seed), optimizer=optimizer)


def batch(seed: int = 0) -> list[EngineInput]:
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, 256, 33) for _ in range(8)]
    return [EngineInput(r[:-1], r[1:]) for r in rows]


def cross_entropy_step(engine, data, hp) -> float:
    fp = engine.forward(data, grad=True)
    loss = -sum(float(lp.sum()) for lp in fp.logprobs) / sum(len(lp) for lp in fp.logprobs)
    fp.backward([-np.ones_like(lp) for lp in fp.logprobs])  # d(sum of NLL)/d(logprobs)
    engine.optim_step(hp)
    return loss


def test_dimuon_trains_the_mock_engine():
    engine = mock_engine(DIMUON)
    data = batch()
    hp = types.DimuonParams(learning_rate=0.03)
    losses = [cross_entropy_step(engine, data, hp) for _ in range(30)]
    assert losses[0] == pytest.approx(6.44, abs=0.05)  # ~ log(256) + the random base's bias
    assert losses[-1] < losses[0] / 5  # memorises 8x32 random tokens within 30 steps


def test_create_without_optimizer_is_adamw_with_unchanged_metrics():
    engine = mock_engine()
    assert engine.optimizer_config == types.AdamOptimizerConfig()
    fp = engine.forward(batch(), grad=True)
    fp.backward([-np.ones_like(lp) for lp in fp.logprobs])
    metrics = engine.optim_step(types.AdamParams(learning_rate=1e-2))
    assert set(metrics) == {"grad_norm", "learning_rate"} and metrics["learning_rate"] == 1e-2
    dimuon_metrics = mock_engine(DIMUON).optim_step(types.DimuonParams(learning_rate=0.5))
    assert set(dimuon_metrics) == set(metrics) and dimuon_metrics["learning_rate"] == 0.5


@pytest.mark.parametrize(
    ("optimizer", "wrong", "says"),
    [
        (
            DIMUON,
            types.AdamParams(learning_rate=1e-4),
            ["Dimuon", "types.DimuonParams", "AdamParams"],
        ),
        (
            None,
            types.DimuonParams(learning_rate=1e-2),
            ["AdamW", "types.AdamParams", "DimuonParams"],
        ),
        (None, OptimParamsBase(type="lion", lr=1.0), ["AdamW", "OptimParamsBase(type='lion')"]),
    ],
)
def test_params_of_another_family_are_refused_and_leave_the_gradients(optimizer, wrong, says):
    engine = mock_engine(optimizer)
    fp = engine.forward(batch(), grad=True)
    fp.backward([-np.ones_like(lp) for lp in fp.logprobs])
    grads = {k: v.copy() for k, v in engine.grads.items()}
    weights = engine.state().weights
    with pytest.raises(optimizers.OptimizerParamsError) as info:
        step(engine, wrong)
    assert isinstance(info.value, RequestError)
    for text in [*says, "fixed at creation"]:
        assert text in str(info.value)
    assert all(np.array_equal(engine.grads[k], grads[k]) for k in grads)
    assert all(np.array_equal(engine.state().weights[k], weights[k]) for k in weights)


def test_bare_dimuon_params_base_is_read_as_dimuon_params():
    params = optimizers.check_step_params(DIMUON, OptimParamsBase(type="dimuon", learning_rate=0.1))
    assert params == types.DimuonParams(learning_rate=0.1)
    with pytest.raises(RequestError, match="Invalid Dimuon parameters"):
        optimizers.check_step_params(
            DIMUON, OptimParamsBase(type="dimuon", learning_rate=0.1, momentum=0.5)
        )


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (OptimizerConfigBase(type="foo"), "unknown type 'foo'"),
        (OptimizerConfigBase(type="dimuon", version=2), "version"),
        (OptimizerConfigBase(type="adamw", beta=0.9), "beta"),
    ],
)
def test_unsupported_optimizers_are_refused_at_creation(config, says):
    factory = MockFactory()
    with pytest.raises(optimizers.UnknownOptimizerError) as info:
        factory.create(factory.resolve(TINY), LoraConfig(rank=8), optimizer=config)
    assert isinstance(info.value, RequestError)
    assert says in str(info.value) and "adamw, dimuon" in str(info.value)


def test_bare_configs_are_read_as_their_family_and_other_objects_refused():
    assert optimizers.normalized_config(OptimizerConfigBase(type="dimuon")) == DIMUON
    assert optimizers.optimizer_name(None) == "adamw"
    assert optimizers.optimizer_name(types.AdamOptimizerConfig()) == "adamw"
    assert mock_engine(OptimizerConfigBase(type="dimuon")).optimizer_config == DIMUON
    with pytest.raises(TypeError, match="DimuonOptimizerConfig"):
        optimizers.normalized_config({"type": "dimuon"})  # type: ignore[arg-type]


def load_optimizer(engine, optimizer_state) -> None:
    """Load ``optimizer_state`` into ``engine``, keeping its weights."""
    engine.load(EngineState(engine.state().weights, optimizer_state))


def through_safetensors(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a checkpoint on disk gives back (the store writes safetensors)."""
    return dict(st_load(io.BytesIO(st_save(state)).getvalue()))


def test_dimuon_resume_continues_bit_identically():
    hp = types.DimuonParams(learning_rate=0.03, grad_clip_norm=50.0)
    data = batch(1)
    first = mock_engine(DIMUON, seed=0)
    for _ in range(3):
        cross_entropy_step(first, data, hp)
    weights, state = first.state().weights, through_safetensors(first.state().optimizer)
    assert int(state["step"][0]) == 3
    assert bytes(state["optimizer"]) == b"dimuon"
    assert {k for k in state if k.startswith("m/")} == {f"m/{k}" for k in weights}
    second = mock_engine(DIMUON, seed=1)
    load(second, EngineState(weights, state))
    for _ in range(2):
        cross_entropy_step(first, data, hp)
        cross_entropy_step(second, data, hp)
    a, b = first.state().weights, second.state().weights
    assert all(np.array_equal(a[k], b[k]) for k in a)
    sa, sb = first.state().optimizer, second.state().optimizer
    assert set(sa) == set(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_state_of_another_optimizer_is_refused():
    adam, dimuon_engine = mock_engine(), mock_engine(DIMUON)
    cross_entropy_step(adam, batch(), types.AdamParams(learning_rate=1e-2))
    cross_entropy_step(dimuon_engine, batch(), types.DimuonParams(learning_rate=1e-2))
    adam_state, dimuon_state = adam.state().optimizer, dimuon_engine.state().optimizer
    assert bytes(adam_state["optimizer"]) == b"adamw"
    with pytest.raises(optimizers.OptimizerStateMismatchError) as info:
        load_optimizer(mock_engine(DIMUON), adam_state)
    assert isinstance(info.value, ConfigMismatchError)
    assert "belongs to AdamW" in str(info.value) and "trains with Dimuon" in str(info.value)
    with pytest.raises(optimizers.OptimizerStateMismatchError, match="belongs to Dimuon"):
        load_optimizer(mock_engine(), dimuon_state)
    # state saved before the tag existed is AdamW's
    legacy = {k: v for k, v in adam_state.items() if k != "optimizer"}
    restored = mock_engine()
    load_optimizer(restored, legacy)
    assert restored.state().optimizer.keys() == adam_state.keys()
    with pytest.raises(optimizers.OptimizerStateMismatchError):
        load_optimizer(mock_engine(DIMUON), legacy)


def test_snapshot_keeps_the_optimizer_family():
    engine = mock_engine(DIMUON)
    assert engine.snapshot().optimizer_config == DIMUON
