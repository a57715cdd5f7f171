"""The conformance suite runs every test on each backend: the offline ones always, the
real service when TINKER_API_KEY is set. A semantic difference from the service shows
up here as a failing test."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

import tinkerkit as tk
from tinkerkit.backends.registry import offline_backends


@dataclass(frozen=True)
class Target:
    backend: str
    model: str
    learning_rate: float
    # Training and sampling can use different kernels on the service; offline they agree.
    logprob_tolerance: float


TARGETS = {
    "mock": Target("mock", "tinkerkit/tiny", 1e-2, 1e-4),
    "local": Target("local", "tinkerkit/tiny", 1e-2, 1e-4),
    "tinker": Target("tinker", "meta-llama/Llama-3.2-1B", 1e-3, 5e-2),
}


def _params():
    params = []
    for name in ("mock", "local"):
        marks = []
        if name not in offline_backends():
            marks.append(pytest.mark.skip(reason=f"backend {name!r} is not available"))
        params.append(pytest.param(name, marks=marks, id=name))
    params.append(
        pytest.param(
            "tinker",
            id="tinker",
            marks=[
                pytest.mark.tinker,
                pytest.mark.skipif(
                    not os.environ.get("TINKER_API_KEY"), reason="needs TINKER_API_KEY"
                ),
            ],
        )
    )
    return params


@pytest.fixture(params=_params())
def target(request) -> Target:
    if request.param == "local":
        pytest.importorskip("torch")
    return TARGETS[request.param]


@pytest.fixture
def service(target):
    return tk.connect(target.backend)


@pytest.fixture
def tokenizer(training):
    return training.get_tokenizer()
