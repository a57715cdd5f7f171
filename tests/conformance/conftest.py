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


@pytest.fixture(scope="session")
def _offline_services():
    """One ServiceClient per offline backend for the whole run (a connection costs a
    session and four HTTP clients); each test still has its own home and its own
    training clients. Tests about sessions or closing use a fresh one (test_rest.py)."""
    return {name: tk.connect(name) for name in offline_backends()}


@pytest.fixture
def service(target, _offline_services):
    if target.backend in _offline_services:
        return _offline_services[target.backend]
    return tk.connect(target.backend)


@pytest.fixture
def fresh_service(target):
    """A service client of its own: a new session, free to close."""
    return tk.connect(target.backend)


@pytest.fixture
def tokenizer(training):
    return training.get_tokenizer()
