"""Export bases for service names: the stand-in the local backend trained, or the mapped
real model."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("quicktok")

from tinkerkit.export.bases import resolve_base
from tinkerkit.models import tokenizer as byte_tok


def test_a_service_name_exports_its_stand_in():
    folder = resolve_base("meta-llama/Llama-3.2-1B")
    config = json.loads((folder / "config.json").read_text())
    assert (config["vocab_size"], config["bos_token_id"]) == (128256, 128000)
    assert (folder / "tokenizer.json").is_file()
    assert resolve_base("meta-llama/Llama-3.2-1B") == folder  # written once


def test_a_mapped_model_folder_is_the_base(tmp_path, monkeypatch):
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    byte_tok.byte_tokenizer().save_pretrained(folder)
    monkeypatch.setenv("TINKERKIT_MODELS", f"Qwen/Qwen3-8B={folder}")
    assert resolve_base("Qwen/Qwen3-8B") == folder.resolve()
