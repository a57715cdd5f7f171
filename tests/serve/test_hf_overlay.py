"""server/hf_overlay.py: which hub ids a model answers to, and the cache layout it writes."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import ClassVar

import pytest
from transformers import AutoImageProcessor, AutoTokenizer

from tinkerkit.backends import registry
from tinkerkit.models.tokenizer import byte_tokenizer
from tinkerkit.rules.images import Processor, Vision
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
    """A backend whose models are given by the test (``MODELS``: name → tokenizer;
    ``VISION``: name → how a vision model reads images)."""

    name = "fake"
    MODELS: ClassVar[dict[str, object]] = {}
    VISION: ClassVar[dict[str, Vision]] = {}

    def known_models(self) -> list[str]:
        return list(self.MODELS)

    def resolve(self, name: str):
        from tinkerkit.models.registry import ModelSpec

        if name not in self.MODELS:
            raise KeyError(name)
        return ModelSpec(name, "fake", 261, 4096, vision=self.VISION.get(name))

    def tokenizer(self, spec):
        return self.MODELS[spec.name]


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(registry._FACTORIES, "fake", f"{__name__}:FakeFactory")
    monkeypatch.setattr(FakeFactory, "MODELS", {})
    monkeypatch.setattr(FakeFactory, "VISION", {})
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


# --- image processors of vision models -----------------------------------------------------


def _image_processor(cache: Path, repo_id: str):
    """What ``AutoImageProcessor.from_pretrained(repo_id)`` gives offline on this cache
    (the cookbook's ``get_image_processor`` under ``tinkerkit run``)."""
    return AutoImageProcessor.from_pretrained(repo_id, cache_dir=str(cache), local_files_only=True)


def test_a_vision_model_gets_the_servers_image_processor_offline(tmp_path):
    """The mock backend's own tiny-vl: its processor counts the tokens the server does."""
    overlay = build_overlay(tmp_path / "o", "mock", names=["tinkerkit/tiny-vl", "tinkerkit/tiny"])

    processor = _image_processor(overlay.cache, "tinkerkit/tiny-vl")
    assert processor.patch_size == 16 and processor.merge_size == 2
    for height, width in [(64, 64), (64, 80), (480, 360), (17, 900), (1000, 3000), (5000, 5000)]:
        patches = processor.get_number_of_image_patches(height, width, images_kwargs={})
        assert patches // processor.merge_size**2 == Processor().tokens(height, width)
    assert Processor().tokens(480, 360) == 165 and Processor().tokens(5000, 5000) == 16384
    # A text-only model gets no processor file, so the lookup fails as on the hub.
    assert not (_snapshot(overlay.cache, "tinkerkit/tiny") / "preprocessor_config.json").exists()
    with pytest.raises(OSError, match="image processor"):
        _image_processor(overlay.cache, "tinkerkit/tiny")


def test_every_catalogue_vision_name_gets_a_processor_file(tmp_path, fake_backend):
    """The processor is the spec's, written per repo: two models sharing one saved
    tokenizer (one text-only, one vision) differ only in that file."""
    from tinkerkit.models.catalogue import CATALOGUE

    vision_names = [e.name for e in CATALOGUE.values() if e.vision]
    assert "Qwen/Qwen3.5-397B-A17B" in vision_names
    assert "Qwen/Qwen3-VL-30B-A3B-Instruct" in vision_names
    for name in [*vision_names, "Qwen/Qwen3-8B"]:
        fake_backend[name] = _named(name)
    FakeFactory.VISION.update({n: Vision(262, 261, 263) for n in vision_names})

    overlay = build_overlay(tmp_path / "o", "fake")

    for name in vision_names:
        snapshot = _snapshot(overlay.cache, name)
        config = json.loads((snapshot / "preprocessor_config.json").read_text())
        assert config == Processor().config()
    text = _snapshot(overlay.cache, "Qwen/Qwen3-8B")
    assert (text / "tokenizer.json").is_file()
    assert not (text / "preprocessor_config.json").exists()
    processor = _image_processor(overlay.cache, "Qwen/Qwen3.5-397B-A17B")
    assert processor.get_number_of_image_patches(64, 64, images_kwargs={}) // 4 == 64


def test_a_mapped_vision_folder_keeps_its_own_processor(tmp_path, fake_backend):
    folder = tmp_path / "my-vl"
    byte_tokenizer().save_pretrained(str(folder))
    (folder / "config.json").write_text('{"model_type": "qwen3_vl"}')
    own = {**Processor().config(), "patch_size": 14}
    (folder / "preprocessor_config.json").write_text(json.dumps(own))
    fake_backend["org/my-vl"] = AutoTokenizer.from_pretrained(str(folder))
    FakeFactory.VISION["org/my-vl"] = Vision(262, 261, 263, Processor.of(own))

    overlay = build_overlay(tmp_path / "o", "fake", names=[], also=["org/my-vl"])

    snapshot = _snapshot(overlay.cache, "org/my-vl")
    assert os.readlink(snapshot / "preprocessor_config.json") == str(
        folder.resolve() / "preprocessor_config.json"
    )
    processor = _image_processor(overlay.cache, "org/my-vl")
    assert processor.patch_size == 14
    tokens = processor.get_number_of_image_patches(300, 200, images_kwargs={}) // 4
    assert tokens == Processor.of(own).tokens(300, 200) != Processor().tokens(300, 200)


def test_a_cached_vision_repo_without_a_processor_gets_one_beside_your_files(
    tmp_path, fake_backend
):
    user = tmp_path / "user-hub"
    for repo_id, with_processor in [("org/vl-bare", False), ("org/vl-full", True)]:
        repo = user / repo_folder(repo_id)
        byte_tokenizer().save_pretrained(str(repo / "snapshots" / "abc"))
        if with_processor:
            (repo / "snapshots" / "abc" / "preprocessor_config.json").write_text(
                json.dumps({**Processor().config(), "merge_size": 1})
            )
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("abc")
        fake_backend[repo_id] = _named(repo_id)
        FakeFactory.VISION[repo_id] = Vision(262, 261, 263)
    before = sorted(str(p) for p in user.rglob("*"))

    overlay = build_overlay(tmp_path / "o", "fake", user_cache=user)

    assert overlay.sources == {"org/vl-bare": "your cache", "org/vl-full": "your cache"}
    # Complete: your repo as it is.
    assert os.readlink(overlay.cache / repo_folder("org/vl-full")) == str(
        user / repo_folder("org/vl-full")
    )
    assert _image_processor(overlay.cache, "org/vl-full").merge_size == 1
    # No processor: your files, linked, and the server's processor beside them.
    snapshot = _snapshot(overlay.cache, "org/vl-bare")
    assert os.readlink(snapshot / "tokenizer.json") == str(
        user / repo_folder("org/vl-bare") / "snapshots" / "abc" / "tokenizer.json"
    )
    assert _image_processor(overlay.cache, "org/vl-bare").merge_size == 2
    assert sorted(str(p) for p in user.rglob("*")) == before
