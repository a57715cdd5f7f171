from __future__ import annotations

import pytest
import tinker

import tinkerkit as tk
from tinkerkit.errors import BackendNotConfiguredError, MissingAPIKeyError, UnknownBackendError


def test_explicit_backend_wins(monkeypatch):
    monkeypatch.setenv("TINKERKIT_BACKEND", "tinker")
    assert tk.connection_of(tk.connect("mock")).backend == "mock"


def test_env_backend(monkeypatch):
    monkeypatch.setenv("TINKERKIT_BACKEND", "mock")
    assert tk.connection_of(tk.connect()).backend == "mock"


@pytest.mark.parametrize("backend", ["mock", "local"])
def test_offline_clients_are_the_sdks_own_classes(backend):
    if backend == "local":
        pytest.importorskip("torch")
    service = tk.connect(backend)
    assert type(service) is tinker.ServiceClient
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
    assert type(training) is tinker.TrainingClient
    sampler = training.save_weights_and_get_sampling_client().result()
    assert type(sampler) is tinker.SamplingClient
    assert type(service.create_sampling_client(base_model="tinkerkit/tiny").result()) is (
        tinker.SamplingClient
    )
    assert type(tk.rest_client(service)) is tinker.RestClient
    connection = tk.connection_of(service)
    assert connection.backend == backend and connection.api_key not in repr(connection)
    assert tk.connection_of(tinker.ServiceClient(api_key="tml-x", base_url="http://x")) is None


def test_bad_latency_is_refused():
    for latency in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="latency"):
            tk.connect("mock", latency=latency)


def test_no_backend_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TINKERKIT_BACKEND", raising=False)
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(BackendNotConfiguredError) as info:
        tk.connect()
    for word in ("tinker", "mock", "local", "TINKER_API_KEY"):
        assert word in str(info.value)


def test_api_key_selects_tinker_and_returns_the_official_client(monkeypatch):
    import tinker

    monkeypatch.delenv("TINKERKIT_BACKEND", raising=False)
    monkeypatch.setenv("TINKER_API_KEY", "tml-dummy-key-for-tests")
    constructed = {}

    class FakeServiceClient:
        def __init__(self, **kwargs):
            constructed.update(kwargs)

    monkeypatch.setattr(tinker, "ServiceClient", FakeServiceClient)
    # No server at that URL: skip the reachability probe (tests/serve/test_limits.py).
    monkeypatch.setattr("tinkerkit.server_probe.probe_base_url", lambda *args: None)
    client = tk.connect(base_url="http://127.0.0.1:1")
    assert isinstance(client, FakeServiceClient)
    assert constructed == {"base_url": "http://127.0.0.1:1"}


def test_tinker_without_key_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="TINKER_API_KEY"):
        tk.connect("tinker")


def test_unknown_backend_lists_options():
    with pytest.raises(UnknownBackendError) as info:
        tk.connect("gpu-cluster")
    assert "mock" in str(info.value) and "tinker" in str(info.value)


def test_offline_backend_rejects_unknown_options():
    with pytest.raises(TypeError, match="api_key"):
        tk.connect("mock", api_key="x")


def test_types_are_the_official_ones():
    import tinker

    assert tk.types is tinker.types
