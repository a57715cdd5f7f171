"""One scenario, run direct (``tk.connect("mock")``) and through ``tinkerkit serve`` with the
official SDK: identical numbers, metrics and exception classes.

A user's script tested offline must behave as it will against a Tinker server, so the
two transports may not differ in anything the script can observe: every loss, metric,
logprob and sampled token is compared exactly, and every error by the SDK classes a
user's ``except`` clause can name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pydantic
import pytest
from tinker import types

import tinkerkit as tk
from tests.conformance.helpers import qa_datums, rl_datum
from tests.conformance.loss_references import cookbook_datum

MODEL = "tinkerkit/tiny"


def _arrays(out: types.ForwardBackwardOutput) -> list[list[float]]:
    return [o["logprobs"].to_numpy().tolist() for o in out.loss_fn_outputs]


def _portable(exc: BaseException) -> set[str]:
    """The classes of ``exc`` a user's ``except`` can name portably: the tinker SDK's and
    Python's own (a pydantic ValidationError counts as the ValueError it is)."""
    names = set()
    for klass in type(exc).__mro__:
        if klass is pydantic.ValidationError:
            names.add("ValueError")
        elif klass.__module__.split(".")[0] in ("builtins", "tinker") and klass not in (
            BaseException,
            Exception,
            object,
        ):
            names.add(klass.__name__)
    return names


def _error(fn: Callable[[], Any]) -> tuple[set[str], str | None]:
    try:
        fn()
    except Exception as exc:
        category = getattr(exc, "category", None)
        return _portable(exc), str(category) if category is not None else None
    return set(), None


def _scenario(service: Any, tokenizer: Any) -> dict[str, Any]:
    torch = pytest.importorskip("torch")
    seen: dict[str, Any] = {}
    training = service.create_lora_training_client(base_model=MODEL, rank=8, seed=11).result()
    data = qa_datums(tokenizer)
    fb = training.forward_backward(data, "cross_entropy")
    step = training.optim_step(types.AdamParams(learning_rate=1e-2))
    seen["fb"] = (fb.result().metrics, _arrays(fb.result()))
    seen["step"] = step.result().metrics
    current = training.forward(data, "cross_entropy").result()
    seen["forward"] = _arrays(current)
    rng = np.random.default_rng(0)
    rl = [
        rl_datum(
            d,
            np.asarray(lp, np.float32) + rng.normal(0, 0.3, len(lp)).astype(np.float32),
            rng.normal(0, 1, len(lp)).astype(np.float32),
        )
        for d, lp in zip(data, seen["forward"], strict=True)
    ]
    for loss in ("importance_sampling", "ppo", "cispo", "dro"):
        seen[loss] = training.forward(rl, loss).result().metrics

    def nll(batch: list[types.Datum], lps: list[Any]) -> tuple[Any, dict[str, float]]:
        loss = sum((-lp * lp.exp()).sum() for lp in lps)
        return loss, {"custom/entropy:sum": float(loss.detach())}

    custom = training.forward_backward_custom(data, nll).result()
    seen["custom"] = (custom.metrics, _arrays(custom))
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()

    path = training.save_state("diff-state").result().path
    resumed = service.create_training_client_from_state_with_optimizer(path).result()
    seen["resumed"] = _arrays(resumed.forward(data, "cross_entropy").result())
    sampler_path = training.save_weights_for_sampler("diff-sampler").result().path
    sampler = service.create_sampling_client(model_path=sampler_path).result()
    prompt = data[0].model_input
    params = types.SamplingParams(max_tokens=8, temperature=1.0, seed=3)
    sampled = sampler.sample(prompt, 3, params, include_prompt_logprobs=True).result()
    seen["sample"] = (
        [(s.tokens, s.logprobs, s.stop_reason) for s in sampled.sequences],
        sampled.prompt_logprobs,
    )
    seen["compute_logprobs"] = sampler.compute_logprobs(prompt).result()

    # RL on the cookbook's rollouts: gspo, and stable_reinforce on recorded sequences.
    recorder = training.save_weights_and_get_sampling_client(record_stability_info=True).result()
    rollouts = recorder.sample(prompt, 4, params).result().sequences
    advantages = [1.0, -1.0, 0.5, -0.5]
    for loss in ("gspo", "stable_reinforce"):
        batch = [
            cookbook_datum(prompt, q, a, loss) for q, a in zip(rollouts, advantages, strict=True)
        ]
        out = training.forward(batch, loss).result()
        seen[loss] = (out.metrics, _arrays(out))
    # Top-K targets (N, K), and the sampling extras.
    tokens = data[0].model_input.to_ints()
    targets = np.stack([np.roll(np.arange(len(tokens)), -1) % 200 + k for k in range(3)], axis=1)
    topk = types.Datum(
        model_input=data[0].model_input,
        loss_fn_inputs={
            "target_tokens": types.TensorData.from_numpy(targets.astype(np.int64)),
            "weights": types.TensorData.from_numpy(np.full(targets.shape, 0.5, np.float32)),
        },
    )
    out = training.forward([topk], "cross_entropy").result()
    seen["topk_targets"] = (out.metrics, _arrays(out))
    extras = sampler.sample(
        prompt,
        2,
        params,
        include_prompt_logprobs=True,
        topk_prompt_logprobs=3,
        topk_sample_logprobs=2,
        prompt_alt_tokens_k=2,
    ).result()
    seen["sample_extras"] = (
        [s.topk_logprobs for s in extras.sequences],
        extras.topk_prompt_logprobs,
        extras.prompt_alt_tokens.tokens.tolist() if extras.prompt_alt_tokens else None,
    )
    rest = tk.rest_client(service)
    info = rest.get_weights_info_by_tinker_path(path).result()
    seen["weights_info"] = (info.base_model, info.lora_rank, info.is_lora)

    dimuon = service.create_lora_training_client(
        base_model=MODEL, rank=8, seed=11, optimizer=types.DimuonOptimizerConfig()
    ).result()
    dimuon.forward_backward(data, "cross_entropy")
    seen["dimuon_step"] = dimuon.optim_step(types.DimuonParams(learning_rate=0.02)).result().metrics
    seen["dimuon"] = _arrays(dimuon.forward(data, "cross_entropy").result())

    no_targets = types.Datum(
        model_input=data[0].model_input,
        loss_fn_inputs={"weights": data[0].loss_fn_inputs["weights"]},
    )
    huge = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2]),
        loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(np.array([2, 10**6]))},
    )
    broken = service.create_lora_training_client(base_model=MODEL, rank=4).result()

    def fails(batch: list[types.Datum], lps: list[Any]) -> tuple[Any, dict[str, float]]:
        raise ValueError("this loss is broken")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errors: dict[str, Callable[[], Any]] = {
            "no target_tokens": lambda: training.forward([no_targets], "cross_entropy").result(),
            "unknown loss": lambda: training.forward(data, "bradley_terry").result(),  # type: ignore[arg-type]
            "unknown config key": lambda: training.forward(data, "ppo", {"eps": 0.1}).result(),
            "token out of vocabulary": lambda: training.forward([huge], "cross_entropy").result(),
            "empty data": lambda: training.forward([], "cross_entropy"),
            "wrong optimizer params": lambda: dimuon.optim_step(
                types.AdamParams(learning_rate=1e-3)
            ).result(),
            "duplicate checkpoint": lambda: training.save_state("diff-state").result(),
            "ttl too short": lambda: training.save_state("short", ttl_seconds=60).result(),
            "missing sampler path": lambda: service.create_sampling_client(
                model_path=f"tinker://{training.model_id}/sampler_weights/nope"
            ).result(),
            "sampling a weights path": lambda: service.create_sampling_client(
                model_path=path
            ).result(),
            "missing state": lambda: service.create_training_client_from_state(
                f"tinker://{training.model_id}/weights/nope"
            ).result(),
            "load a sampler path": lambda: training.load_state(sampler_path).result(),
            "load a missing path": lambda: training.load_state(
                f"tinker://{training.model_id}/weights/nope"
            ).result(),
            "unknown model": lambda: service.create_lora_training_client(
                base_model="no/such-model"
            ).result(),
            "rank zero": lambda: service.create_lora_training_client(
                base_model=MODEL, rank=0
            ).result(),
            "string prompt": lambda: sampler.sample("hi", 1, params).result(),  # type: ignore[arg-type]
            "custom loss fails": lambda: broken.forward_backward_custom(data, fails).result(),
            "after a failed custom loss": lambda: broken.forward(data, "cross_entropy").result(),
            "stable_reinforce without provenance": lambda: training.forward(
                [cookbook_datum(prompt, rollouts[0], 1.0, "importance_sampling")],
                "stable_reinforce",
            ).result(),
            "rest: missing run": lambda: rest.get_training_run("no-such-run").result(),
            "rest: invalid path": lambda: rest.get_training_run_by_tinker_path("nope"),
            "rest: ttl out of bounds": lambda: rest.set_checkpoint_ttl_from_tinker_path(
                path, 10
            ).result(),
        }
        seen["errors"] = {name: _error(fn) for name, fn in errors.items()}
    del torch
    return seen


@pytest.fixture
def byte_tokenizer_direct():
    from tinkerkit.backends.registry import engine_factory

    factory = engine_factory("mock")
    return factory.tokenizer(factory.resolve(MODEL))


def test_direct_and_served_agree_exactly(official, byte_tokenizer_direct):
    direct = _scenario(tk.connect("mock"), byte_tokenizer_direct)
    served = _scenario(official, byte_tokenizer_direct)
    assert direct.keys() == served.keys()
    for key in direct:
        if key == "errors":
            continue
        assert direct[key] == served[key], key
    for name, (classes, category) in direct["errors"].items():
        served_classes, served_category = served["errors"][name]
        assert classes, f"{name}: no error raised directly"
        assert served_classes, f"{name}: no error raised served"
        # Every class the served error has, the direct one has: `except tinker.X:` written
        # against the server (or the service) catches the offline error too.
        assert served_classes <= classes, (name, served_classes, classes)
        if served_category is not None:  # a RequestFailedError's category
            assert category == served_category, name
    # The scenario really exercised distinct error kinds.
    kinds = {frozenset(c) for c, _ in direct["errors"].values()}
    assert {"RequestFailedError", "TinkerError"} in [set(k) for k in kinds]
    assert any("NotFoundError" in k for k in kinds) and any("BadRequestError" in k for k in kinds)
    assert any("RuntimeError" in k for k in kinds) and any("ValueError" in k for k in kinds)
