"""Dimuon in torch (the ``local`` engine) against the numpy one (the ``mock`` engine)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from tinker import types  # noqa: E402
from tinker.types.optimizer import OptimizerConfigBase  # noqa: E402

from tinkerkit.backends import optimizers  # noqa: E402
from tinkerkit.backends.engine import EngineInput, EngineState, LoraConfig, load, step  # noqa: E402
from tinkerkit.backends.local import dimuon as torch_dimuon  # noqa: E402
from tinkerkit.backends.local.dimuon import LoraDimuon  # noqa: E402
from tinkerkit.backends.local.engine import LocalEngine, LocalFactory  # noqa: E402
from tinkerkit.backends.mock import dimuon as numpy_dimuon  # noqa: E402
from tinkerkit.backends.mock.dimuon import Dimuon  # noqa: E402
from tinkerkit.models.registry import TINY  # noqa: E402

DIMUON = types.DimuonOptimizerConfig()
VOCAB = 261


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm((a - b).astype(np.float64)) / np.linalg.norm(b.astype(np.float64)))


@pytest.mark.parametrize(
    ("shape", "rank"), [((8, 64), 8), ((261, 8), 8), ((4, 4), 4), ((32, 512), 32)]
)
def test_numpy_and_torch_directions_agree(shape, rank):
    rng = np.random.default_rng(shape[0])
    m = (rng.standard_normal(shape) * rng.uniform(0.1, 3.0, (shape[0], 1)) * 1e-3).astype(
        np.float32
    )
    ours = numpy_dimuon.direction(m, rank)
    theirs = torch_dimuon.direction(torch.from_numpy(m), rank).numpy()
    assert theirs.dtype == np.float32
    assert rel(theirs, ours) < 1e-5
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5 * np.abs(ours).max())


def test_numpy_and_torch_steps_agree():
    rng = np.random.default_rng(0)
    shapes = {"A": (8, 48), "B": (96, 8)}
    start = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    steps = [
        {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(3)
    ]
    hp = types.DimuonParams(learning_rate=0.05, beta1=0.7, grad_clip_norm=20.0)
    numpy_params = {k: v.copy() for k, v in start.items()}
    numpy_opt = Dimuon(8)
    torch_params = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in start.items()}
    torch_opt = LoraDimuon(torch_params, 8)
    for grads in steps:
        a = numpy_opt.step(numpy_params, grads, hp)
        for k, p in torch_params.items():
            p.grad = torch.from_numpy(grads[k].copy())
        b = torch_opt.step(hp)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-6)
        assert b == {"grad_norm": b["grad_norm"], "learning_rate": 0.05}
        assert all(float(p.grad.abs().max()) == 0.0 for p in torch_params.values())  # zeroed
    for k in start:
        moved = torch_params[k].detach().numpy() - start[k]
        assert rel(moved, numpy_params[k] - start[k]) < 1e-5, k
        assert rel(torch_opt.m[k].numpy(), numpy_opt.m[k]) < 1e-6, k


# --- the local engine -----------------------------------------------------------------


def local_engine(optimizer: types.OptimizerConfig | None = None, seed: int = 0) -> LocalEngine:
    factory = LocalFactory()
    return factory.create(factory.resolve(TINY), LoraConfig(rank=4, seed=seed), optimizer=optimizer)


def make_batch(seed: int = 0) -> list[EngineInput]:
    rng = np.random.default_rng(seed)
    return [EngineInput(rng.integers(0, VOCAB, n), rng.integers(0, VOCAB, n)) for n in (12, 30, 8)]


def train_step(engine: LocalEngine, batch: list[EngineInput], hp) -> float:
    fp = engine.forward(batch, grad=True)
    fp.backward([-np.ones_like(lp) for lp in fp.logprobs])  # cross-entropy
    engine.optim_step(hp)
    return -sum(float(lp.sum()) for lp in fp.logprobs)


def load_optimizer(engine, optimizer_state) -> None:
    """Load ``optimizer_state`` into ``engine``, keeping its weights."""
    engine.load(EngineState(engine.state().weights, optimizer_state))


def test_local_dimuon_trains_and_resumes_bit_identically():
    hp = types.DimuonParams(learning_rate=0.02, grad_clip_norm=100.0)
    batch = make_batch()
    first = local_engine(DIMUON, seed=0)
    losses = [train_step(first, batch, hp) for _ in range(3)]
    assert losses[-1] < losses[0]
    weights, state = first.state().weights, first.state().optimizer
    assert int(state["step"][0]) == 3 and bytes(state["optimizer"]) == b"dimuon"
    second = local_engine(DIMUON, seed=1)
    load(second, EngineState(weights, state))
    for _ in range(2):
        train_step(first, batch, hp)
        train_step(second, batch, hp)
    a, b = first.state().weights, second.state().weights
    assert all(np.array_equal(a[k], b[k]) for k in a)
    sa, sb = first.state().optimizer, second.state().optimizer
    assert set(sa) == set(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_local_engine_refuses_the_other_family():
    adam, dimuon_engine = local_engine(), local_engine(DIMUON)
    assert adam.optimizer_config == types.AdamOptimizerConfig()
    with pytest.raises(optimizers.OptimizerParamsError, match="Dimuon optimizer"):
        step(dimuon_engine, types.AdamParams(learning_rate=1e-3))
    with pytest.raises(optimizers.OptimizerParamsError, match="AdamW optimizer"):
        step(adam, types.DimuonParams(learning_rate=1e-3))
    train_step(adam, make_batch(), types.AdamParams(learning_rate=1e-3))
    train_step(dimuon_engine, make_batch(), types.DimuonParams(learning_rate=1e-3))
    with pytest.raises(optimizers.OptimizerStateMismatchError, match="belongs to AdamW"):
        load_optimizer(local_engine(DIMUON), adam.state().optimizer)
    with pytest.raises(optimizers.OptimizerStateMismatchError, match="belongs to Dimuon"):
        load_optimizer(local_engine(), dimuon_engine.state().optimizer)


def test_local_factory_refuses_an_unknown_optimizer():
    factory = LocalFactory()
    with pytest.raises(optimizers.UnknownOptimizerError, match="adamw, dimuon"):
        factory.create(
            factory.resolve(TINY), LoraConfig(rank=4), optimizer=OptimizerConfigBase(type="sgd")
        )
