"""The catalogue: every service name of tinker-cookbook 0.6.1, what the SDK loads for it,
and how unknown names are refused."""

from __future__ import annotations

import pytest

from tinkerkit.backends.mock.engine import MockFactory
from tinkerkit.errors import UnknownModelError
from tinkerkit.models import SERVICE_MODELS, catalogue
from tinkerkit.models.catalogue import CATALOGUE, NEEDS_TML_RENDERERS, lookup
from tinkerkit.models.tokenizers.families import FAMILIES

# tinker-cookbook 0.6.1's defaults (recipes, README): each must resolve offline.
COOKBOOK_DEFAULTS = [
    "Qwen/Qwen3.5-9B-Base",
    "Qwen/Qwen3.5-4B",
    "Qwen/Qwen3.5-9B",
    "Qwen/Qwen3.6-35B-A3B",
]

# Published vocabulary sizes (config.json vocab_size) per tokenizer family.
VOCAB = {
    "qwen3": 151936,
    "qwen3_5": 248320,
    "llama3": 128256,
    "o200k_harmony": 201088,
    "deepseek_v3": 129280,
    "deepseek_v4": 129280,
    "kimi": 163840,
    "kimi_k3": 163840,
    "glm": 154880,
    "nemotron": 131072,
}


def test_service_models_are_the_catalogue():
    assert tuple(CATALOGUE) == SERVICE_MODELS
    assert len(CATALOGUE) == 43


def test_catalogue_matches_the_cookbooks_model_info():
    model_info = pytest.importorskip("tinker_cookbook.model_info")
    listed = {}
    for table in (
        model_info.get_llama_info,
        model_info.get_qwen_info,
        model_info.get_deepseek_info,
        model_info.get_gpt_oss_info,
        model_info.get_moonshot_info,
        model_info.get_zai_info,
        model_info.get_nvidia_info,
    ):
        for version, attrs in table().items():
            listed[f"{attrs.organization}/{version}"] = attrs
    assert set(listed) == set(CATALOGUE)
    for name, attrs in listed.items():
        entry = CATALOGUE[name]
        assert entry.renderer == attrs.recommended_renderers[0], name
        assert entry.is_chat == attrs.is_chat, name
    thinking_machines = model_info.get_thinkingmachines_info()
    assert {f"thinkingmachines/{n}" for n in thinking_machines} == set(NEEDS_TML_RENDERERS)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_entry_is_complete(name):
    entry = CATALOGUE[name]
    assert entry.tokenizer_family in FAMILIES
    assert entry.vocab_size == VOCAB[entry.tokenizer_family]
    assert entry.context_length >= 32768
    # The SDK's and the cookbook's rule: Llama 3 loads the ungated copy, the rest itself
    # (Kimi K3.1-Pro: the SDK's "moonshotai/Kimi-K3").
    if name.startswith("meta-llama/Llama-3"):
        assert entry.tokenizer_id == "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
    elif name == "moonshotai/Kimi-K3.1-Pro":
        assert entry.tokenizer_id == "moonshotai/Kimi-K3"
    else:
        assert entry.tokenizer_id == name
    assert entry.trust_remote_code == name.startswith("moonshotai/")


def test_published_figures():
    assert lookup("Qwen/Qwen3-8B").context_length == 32768
    assert lookup("Qwen/Qwen3-4B-Instruct-2507").context_length == 262144
    assert lookup("openai/gpt-oss-120b").context_length == 32768
    assert lookup("Qwen/Qwen3.5-397B-A17B").renderer == "qwen3_5"


def test_long_context_variants_take_their_context():
    entry = lookup("Qwen/Qwen3.6-35B-A3B:peft:262144")
    assert entry is not None and entry.name == "Qwen/Qwen3.6-35B-A3B:peft:262144"
    assert entry.context_length == 262144 and entry.vocab_size == 248320
    assert lookup("Qwen/Qwen3-8B:peft:0") is None
    assert lookup("nobody/model:peft:1024") is None
    assert catalogue.base_name("zai-org/GLM-5.3:peft:262144") == "zai-org/GLM-5.3"


@pytest.mark.parametrize("name", COOKBOOK_DEFAULTS)
def test_cookbook_default_models_resolve(name):
    spec = MockFactory().resolve(name)
    assert (spec.vocab_size, spec.max_context_length, spec.family) == (248320, 65536, "qwen3_5")
    assert MockFactory().tokenizer_id(spec) == name


def test_unknown_name_lists_the_models_and_how_to_add_one():
    with pytest.raises(UnknownModelError) as caught:
        MockFactory().resolve("Qwen/Qwen9-1B")
    message = str(caught.value)
    assert "Qwen/Qwen3-8B" in message and "tinkerkit/tiny" in message
    assert "To add a model" in message
    assert "models={'Qwen/Qwen9-1B': PATH}" in message
    assert "TINKERKIT_MODELS='Qwen/Qwen9-1B=PATH'" in message
    assert "--model Qwen/Qwen9-1B=PATH" in message


def test_inkling_is_refused_naming_tml_renderers():
    with pytest.raises(UnknownModelError, match="tml-renderers"):
        MockFactory().resolve("thinkingmachines/Inkling")
