"""Service names offline: a network sized to the real vocabulary, the real tokenizer, the
user's mapping, and the byte fallback when no tokenizer can be had."""

from __future__ import annotations

import logging
import math

import pytest
from tinker import types

import tinkerkit as tk
from tests.engines import engine_of
from tinkerkit.backends.mock.engine import MockFactory
from tinkerkit.errors import ModelMappingError
from tinkerkit.models import tokenizer as byte_tok
from tinkerkit.models.catalogue import CATALOGUE
from tinkerkit.models.mapping import ENV_MODELS, model_mapping
from tinkerkit.models.tokenizers import packaged, resolution

pytest.importorskip("quicktok")
QWEN = "Qwen/Qwen3-4B-Instruct-2507"
LLAMA = "meta-llama/Llama-3.2-1B"
CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
]


def chat_datum(tokenizer) -> types.Datum:
    tokens = list(tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=False))
    assert max(tokens) >= 151644  # real ChatML ids, far beyond the byte vocabulary
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def losses_while_training(backend: str, steps: int, lr: float) -> list[float]:
    service = tk.connect(backend)
    training = service.create_lora_training_client(base_model=QWEN, rank=8, seed=0).result()
    datum = chat_datum(training.get_tokenizer())
    losses = []
    for _ in range(steps):
        fb = training.forward_backward([datum], "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=lr)).result()
        losses.append(fb.result().metrics["loss:sum"])
    return losses


def test_real_qwen_datum_trains_on_mock():
    losses = losses_while_training("mock", 8, 2e-2)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_real_qwen_datum_trains_on_local():
    pytest.importorskip("torch")
    losses = losses_while_training("local", 6, 2e-2)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("backend", ["mock", "local"])
def test_tokenizer_and_info_agree_with_the_catalogue(backend):
    if backend == "local":
        pytest.importorskip("torch")
    service = tk.connect(backend)
    for name in (QWEN, LLAMA):
        training = service.create_lora_training_client(base_model=name, rank=4).result()
        entry = CATALOGUE[name]
        # get_info names a local folder holding the model's tokenizer (the SDK's
        # get_tokenizer() loads it without the hub): the same ids as the catalogue's.
        tok, ref = training.get_tokenizer(), resolution.resolve(name).tokenizer
        assert ref.name_or_path == entry.tokenizer_id
        text = "The capital of France is Paris. 12345 éè 日本"
        assert tok.encode(text) == ref.encode(text) and len(tok) == len(ref)
        spec = engine_of(service, training).spec
        assert (spec.vocab_size, spec.max_context_length) == (
            entry.vocab_size,
            entry.context_length,
        )


def test_local_stand_in_is_a_small_llama_with_the_tokenizers_ids():
    pytest.importorskip("torch")
    service = tk.connect("local")
    training = service.create_lora_training_client(base_model=LLAMA, rank=4).result()
    config = engine_of(service, training).lm.config
    assert (config.vocab_size, config.hidden_size) == (128256, 64)
    assert (config.bos_token_id, config.eos_token_id) == (128000, 128009)
    sampler = training.save_weights_and_get_sampling_client().result()
    result = sampler.sample(
        types.ModelInput.from_ints([128000, 9906]),
        num_samples=1,
        sampling_params=types.SamplingParams(max_tokens=4, temperature=1.0, seed=0),
    ).result()
    assert all(0 <= t < 128256 for t in result.sequences[0].tokens)


def test_stand_ins_of_one_family_share_one_base():
    factory = MockFactory()
    a = factory.create(factory.resolve("Qwen/Qwen3-8B"), None)
    b = factory.create(factory.resolve("Qwen/Qwen3-32B"), None)
    assert a.base is b.base
    assert a.base["E"].shape[0] == 151936


def test_default_stop_tokens_are_the_familys():
    factory = MockFactory()
    assert factory.stop_tokens(factory.resolve(QWEN)) == [151645, 151643]
    assert factory.stop_tokens(factory.resolve("tinkerkit/tiny")) == byte_tok.stop_token_ids()


# --- the mapping ------------------------------------------------------------------------


@pytest.fixture
def tokenizer_folder(tmp_path):
    folder = tmp_path / "tok"
    byte_tok.byte_tokenizer().save_pretrained(folder)
    return folder


def test_env_mapping_names_the_tokenizer(tokenizer_folder, monkeypatch):
    monkeypatch.setenv(ENV_MODELS, f"{QWEN}={tokenizer_folder}")
    factory = MockFactory()
    spec = factory.resolve(QWEN)
    assert factory.tokenizer_id(spec) == str(tokenizer_folder.resolve())
    found = factory.names.resolved(QWEN)
    assert (found.origin, len(found.tokenizer)) == ("mapping", byte_tok.VOCAB_SIZE)
    assert spec.vocab_size == 151936  # the stand-in keeps the model's vocabulary


def test_python_mapping_overrides_the_environment(tokenizer_folder, tmp_path, monkeypatch):
    other = tmp_path / "other"
    byte_tok.byte_tokenizer().save_pretrained(other)
    monkeypatch.setenv(ENV_MODELS, f"{QWEN}={tokenizer_folder};{LLAMA}={tokenizer_folder}")
    service = tk.connect("mock", models={QWEN: str(other)})
    training = service.create_lora_training_client(base_model=QWEN, rank=4).result()
    assert training.get_info().model_data.tokenizer_id == str(other.resolve())
    llama = service.create_lora_training_client(base_model=LLAMA, rank=4).result()
    assert llama.get_info().model_data.tokenizer_id == str(tokenizer_folder.resolve())


def test_a_mapped_name_outside_the_catalogue_becomes_known(tokenizer_folder):
    factory = MockFactory(models={"my-org/my-model": tokenizer_folder})
    assert "my-org/my-model" in factory.known_models()
    spec = factory.resolve("my-org/my-model")
    assert spec.vocab_size == byte_tok.VOCAB_SIZE


def test_bad_mapping_entries_are_refused(tmp_path):
    with pytest.raises(ModelMappingError, match="no such file"):
        model_mapping({QWEN: tmp_path / "missing"}, environ={})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelMappingError, match="neither"):
        model_mapping({QWEN: tmp_path / "empty"}, environ={})
    with pytest.raises(ModelMappingError, match="NAME=PATH"):
        model_mapping(environ={ENV_MODELS: "no-equals-sign"})


# --- the byte fallback ------------------------------------------------------------------


def test_byte_fallback_warns_once_when_no_vocabulary_is_installed(monkeypatch, caplog):
    def missing(module):
        raise ImportError(f"No module named {module!r}")

    monkeypatch.setattr(packaged, "_import", missing)
    monkeypatch.setattr(packaged, "_built", {})
    monkeypatch.setattr(resolution, "_resolved", {})
    monkeypatch.setattr(resolution, "_variants", {})
    monkeypatch.setattr(resolution, "_warned", False)
    monkeypatch.setattr(resolution, "_from_hf_cache", lambda entry: None)
    with caplog.at_level(logging.INFO, logger="tinkerkit"):
        qwen = resolution.resolve("Qwen/Qwen3-8B")
        llama = resolution.resolve(LLAMA)
    assert qwen.origin == llama.origin == "byte-fallback"
    assert qwen.tokenizer is byte_tok.byte_tokenizer()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "token ids differ from the service's" in message
    assert "pip install 'tinkerkit[tokenizers]'" in message and "TINKERKIT_MODELS" in message
    # The stand-in still trains: byte ids are inside the model's vocabulary.
    factory = MockFactory()
    spec = factory.resolve("Qwen/Qwen3-8B")
    assert spec.vocab_size == 151936 and factory.tokenizer(spec) is qwen.tokenizer


def test_no_download_is_tried_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not resolution.downloads_allowed()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TINKERKIT_OFFLINE", "1")
    assert not resolution.downloads_allowed()
    assert resolution._from_hub(CATALOGUE[QWEN]) is None
