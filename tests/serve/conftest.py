"""Fixtures for the served tests: one in-process server per backend, official clients.

The conformance fixtures (``target``, ``service``, ``make_client``, ``training``,
``tokenizer``) are re-declared here so that ``test_conformance_served.py`` can run the
conformance test functions through ``tinker.ServiceClient`` → HTTP → the mock backend.
"""

from __future__ import annotations

import os

import pytest
import tinker

from tests.conformance.conftest import Target
from tinkerkit.server import serve

SERVED = Target("served", "tinkerkit/tiny", 1e-2, 1e-4)
MODEL = "tinkerkit/tiny"

# The SDK would otherwise post telemetry batches to the server on every fatal error;
# the server accepts them, but there is no point in the traffic during tests.
os.environ.setdefault("TINKER_TELEMETRY", "0")


@pytest.fixture(scope="session")
def server():
    """One mock-backed server for the whole session (each test still gets its own home:
    the offline store resolves TINKERKIT_HOME on every use)."""
    with serve("mock") as running:
        yield running


@pytest.fixture
def official(server):
    """An unmodified ``tinker.ServiceClient`` pointed at the server (its session finished
    afterwards, so no heartbeat outlives the server)."""
    client = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
    yield client
    client.close("success").result(timeout=10)


@pytest.fixture(scope="session")
def byte_tokenizer():
    """The offline models' tokenizer, built in code (the SDK's get_tokenizer would try to
    download one from the Hugging Face Hub, which these tests cannot reach)."""
    from tinkerkit.backends.registry import engine_factory

    factory = engine_factory("mock")
    return factory.tokenizer(factory.resolve(MODEL))


# --- the conformance suite's fixtures, served ---------------------------------------------


@pytest.fixture(params=["served-mock"])
def target(request) -> Target:
    return SERVED


@pytest.fixture
def service(official):
    return official


@pytest.fixture
def tokenizer(byte_tokenizer):
    return byte_tokenizer
