"""``tinkerkit export|download tinker://mock-...``: the path names its backend, so no
``--backend`` is needed; a checkpoint loaded by another backend is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import tinkerkit as tk
from tinkerkit.backends.registry import backend_of_path
from tinkerkit.backends.store import CheckpointStore
from tinkerkit.cli_export import group
from tinkerkit.errors import RestRequestError


@pytest.fixture
def mock_sampler_path(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("TINKERKIT_BACKEND", raising=False)
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    service = tk.connect("mock")
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=2).result()
    return str(training.save_weights_for_sampler("x").result().path)


@pytest.fixture
def mock_external_path(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("TINKERKIT_BACKEND", raising=False)
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    service = tk.connect("mock")
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=2).result()
    return str(training.save_weights_external("x").result().path)


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        ("tinker://local-23ff83637c634da0/sampler_weights/final", "local"),
        ("tinker://mock-b602ab533d504058/weights/s", "mock"),
        ("tinker://3f2a-uuid/sampler_weights/final", None),  # a service run id
        ("tinker://mock/weights/s", None),
        ("https://mock-x/a", None),
    ],
)
def test_backend_of_path(path: str, backend: str | None) -> None:
    assert backend_of_path(path) == backend


def test_download_needs_no_backend_for_an_offline_path(
    mock_external_path: str, tmp_path: Path
) -> None:
    out = tmp_path / "w"
    result = CliRunner().invoke(
        group, ["download", mock_external_path, "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]


def test_a_sampler_path_is_refused_offline_as_on_tinker(
    mock_sampler_path: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        group, ["download", mock_sampler_path, "--out", str(tmp_path / "w"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {mock_sampler_path} cannot be downloaded directly")
    assert "save_weights_external('<name>')" in result.output
    assert not (tmp_path / "w").exists()


def test_export_of_a_mock_checkpoint_says_mock_adapters_do_not_export(
    mock_external_path: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        group, ["export", mock_external_path, "--out", str(tmp_path / "e"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert result.output == (
        f"error: {mock_external_path} was trained by the mock backend, and mock adapters do not "
        "export: they are numpy stand-ins with no Hugging Face weights behind them. Train with "
        "--backend local (a real small Llama) or on Tinker to get an adapter you can export.\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tinkerkit-home"]


def test_another_backends_checkpoint_is_refused_naming_its_backend(mock_sampler_path: str) -> None:
    store = CheckpointStore()
    with pytest.raises(RestRequestError) as info:
        store.load(mock_sampler_path, backend="local")
    assert str(info.value) == (
        f"{mock_sampler_path} was made by the mock backend; the local backend cannot load it "
        "(its weights are another model's). Use --backend mock (tk.connect('mock'))."
    )
    assert store.load(mock_sampler_path, backend="mock").weights  # its own backend loads it


def test_a_tampered_store_checkpoint_is_one_line(mock_sampler_path: str, tmp_path: Path) -> None:
    store = CheckpointStore()
    archive = store.directory(mock_sampler_path) / "archive.tar"
    archive.write_bytes(archive.read_bytes()[:700])  # torn in the adapter's header
    with pytest.raises(RestRequestError, match=f"^Checkpoint archive {archive} is corrupt"):
        store.load(mock_sampler_path)
    archive.write_bytes(b"\0" * 1024)
    with pytest.raises(RestRequestError, match=r"is corrupt .*KeyError"):
        store.load(mock_sampler_path)
