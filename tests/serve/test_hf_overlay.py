"""server/hf_overlay.py: which hub ids a model answers to, and the cache layout it writes."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import ClassVar

import pytest
from transformers import AutoTokenizer

from tinkerkit.backends import registry
from tinkerkit.models.tokenizer import byte_tokenizer
from tinkerkit.server.hf_overlay import (
    LLAMA3_TOKENIZER,
    build_overlay,
    hub_ids,
    repo_folder,
    user_hub_cache,
)


def test_hub_ids_follow_the_sdk_and_the_cookbook():
    assert hub_ids("Qwen/Qwen3-8B") == ["Qwen/Qwen3-8B"]
    assert hub_ids("Qwen/Qwen3-8B:peft:131072") == ["Qwen/Qwen3-8B"]
    assert hub_ids("meta-llama/Llama-3.1-8B") == ["meta-llama/Llama-3.1-8B", LLAMA3_TOKENIZER]
    assert hub_ids("org/model/variant") == ["org/model"]
    assert hub_ids("not a name") == []


def test_user_hub_cache_precedence(tmp_path):
    assert user_hub_cache({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert user_hub_cache({"HUGGINGFACE_HUB_CACHE": "/c", "HF_HOME": "/b"}) == Path("/c")
    assert user_hub_cache({"HF_HOME": "/b"}) == Path("/b/hub")
    assert user_hub_cache({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")


def _named(name: str, template: str | None = None):
    tok = copy.copy(byte_tokenizer())  # a shallow copy shares the vocabulary, as families do
    tok.name_or_path = name
    if template is not None:
        tok.chat_template = template
    return tok


class FakeFactory:
    """A backend whose models are given by the test (``MODELS``: name → tokenizer)."""

    name = "fake"
    MODELS: ClassVar[dict[str, object]] = {}

    def known_models(self) -> list[str]:
        return list(self.MODELS)

    def resolve(self, name: str):
        from tinkerkit.models.registry import ModelSpec

        if name not in self.MODELS:
            raise KeyError(name)
        return ModelSpec(name, "fake", 261, 4096)

    def tokenizer(self, spec):
        return self.MODELS[spec.name]


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(registry._FACTORIES, "fake", f"{__name__}:FakeFactory")
    monkeypatch.setattr(FakeFactory, "MODELS", {})
    return FakeFactory.MODELS


def _snapshot(cache: Path, repo_id: str) -> Path:
    repo = cache / repo_folder(repo_id)
    return repo / "snapshots" / (repo / "refs" / "main").read_text()


def test_layout_aliases_and_one_saved_copy_per_tokenizer(tmp_path, fake_backend):
    fake_backend.update(
        {
            "meta-llama/Llama-3.2-1B": _named("tinkerkit/byte-tokenizer"),
            "meta-llama/Llama-3.1-8B": _named("tinkerkit/byte-tokenizer"),
            "org/chatty": _named("org/chatty", template="{{ messages[0]['content'] }}"),
        }
    )
    overlay = build_overlay(tmp_path / "o", "fake")

    assert overlay.env() == {"HF_HUB_CACHE": str(tmp_path / "o" / "hub"), "HF_HUB_OFFLINE": "1"}
    assert set(overlay.sources) == {
        "meta-llama/Llama-3.2-1B",
        "meta-llama/Llama-3.1-8B",
        LLAMA3_TOKENIZER,  # the first Llama 3 model claims the shared id
        "tinkerkit/byte-tokenizer",
        "org/chatty",
    }
    snapshot = _snapshot(overlay.cache, "meta-llama/Llama-3.2-1B")
    assert (snapshot / "tokenizer.json").is_symlink() and (snapshot / "config.json").is_file()
    # Two shallow copies with the same files are saved once; another template is its own.
    saved = sorted(p.name for p in (tmp_path / "o" / "tokenizers").iterdir())
    assert saved == ["0", "1"]
    assert os.path.realpath(snapshot / "tokenizer.json") == os.path.realpath(
        _snapshot(overlay.cache, LLAMA3_TOKENIZER) / "tokenizer.json"
    )


def test_offline_autotokenizer_reads_the_overlay(tmp_path, fake_backend, monkeypatch):
    fake_backend["org/chatty"] = _named("org/chatty", template="{{ messages[0]['content'] }}!")
    overlay = build_overlay(tmp_path / "o", "fake")
    snapshot = _snapshot(overlay.cache, "org/chatty")
    tok = AutoTokenizer.from_pretrained(str(snapshot))  # what the hub lookup resolves to
    assert tok.encode("hé <|im_start|>") == byte_tokenizer().encode("hé <|im_start|>")
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "x!"


def test_user_cache_is_linked_never_written(tmp_path, fake_backend):
    user = tmp_path / "user-hub"
    # The backend's tokenizer for org/real *is* the hub tokenizer the user has cached.
    real = user / repo_folder("org/real")
    byte_tokenizer().save_pretrained(str(real / "snapshots" / "abc"))
    (real / "refs").mkdir()
    (real / "refs" / "main").write_text("abc")
    (user / "datasets--me--data").mkdir()
    # A stand-in claiming another id the user has cached: the backend's files win.
    other = user / repo_folder("org/other")
    (other / "snapshots" / "r").mkdir(parents=True)
    (other / "snapshots" / "r" / "tokenizer.json").write_text("{}")
    (other / "refs").mkdir()
    (other / "refs" / "main").write_text("r")
    before = sorted(str(p) for p in user.rglob("*"))
    fake_backend.update({"org/real": _named("org/real"), "org/other": _named("x/stand-in")})

    overlay = build_overlay(tmp_path / "o", "fake", user_cache=user)

    assert overlay.sources["org/real"] == "your cache"
    assert os.readlink(overlay.cache / repo_folder("org/real")) == str(real)
    assert overlay.sources["org/other"] == "backend"
    assert not (overlay.cache / repo_folder("org/other")).is_symlink()
    assert os.readlink(overlay.cache / "datasets--me--data") == str(user / "datasets--me--data")
    assert sorted(str(p) for p in user.rglob("*")) == before


def test_a_mapped_folder_is_linked_file_by_file(tmp_path, fake_backend):
    folder = tmp_path / "my-model"
    byte_tokenizer().save_pretrained(str(folder))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    fake_backend["org/mapped"] = AutoTokenizer.from_pretrained(str(folder))

    overlay = build_overlay(tmp_path / "o", "fake", names=[], also=["org/mapped"])

    assert overlay.sources == {"org/mapped": str(folder.resolve())}
    snapshot = _snapshot(overlay.cache, "org/mapped")
    assert os.readlink(snapshot / "config.json") == str(folder.resolve() / "config.json")


def test_names_the_backend_cannot_resolve_are_skipped(tmp_path, fake_backend):
    fake_backend["org/fine"] = _named("org/fine")
    overlay = build_overlay(tmp_path / "o", "fake", names=["org/fine", "org/unknown"])
    assert set(overlay.sources) == {"org/fine"}
