"""The Tinker service's model names, as tinker-cookbook 0.6.1's ``model_info`` lists them.

Each entry says what the offline backends need to stand in for the model faithfully:
the tokenizer the SDK and the cookbook load for it (``tokenizer_id``), the context the
service serves it at, the cookbook's recommended renderer, the tokenizer family (whose
special tokens, chat format and stop tokens the offline tokenizer reproduces) and the
model's vocabulary size (embedding rows; it may exceed ``len(tokenizer)``)::

    >>> entry = lookup("Qwen/Qwen3-8B")
    >>> entry.tokenizer_family, entry.vocab_size, entry.context_length
    ('qwen3', 151936, 32768)

Sources:

- names and renderers: ``tinker_cookbook.model_info`` 0.6.1 (``get_*_info``; the first
  recommended renderer);
- tokenizer ids: ``tinker.lib.public_interfaces.sampling_client.
  _load_tokenizer_from_model_info`` (tinker 0.38) and ``tinker_cookbook.tokenizer_utils.
  _get_hf_tokenizer``: Llama 3 names load the ungated
  ``thinkingmachineslabinc/meta-llama-3-instruct-tokenizer``, Kimi loads pinned revisions
  with remote code, every other name its own hub id;
- context lengths: the service's window for the bare name where the cookbook's eval
  defaults state it (``tinker_cookbook/eval/benchmarks/_types.py``
  ``_MODEL_EVAL_DEFAULTS``, which follows tinker-docs.thinkingmachines.ai/tinker/models/);
  otherwise the model card's native context (marked "card") or, marked "guess", the
  family's. ``NAME:peft:N`` (the service's long-context variants, e.g.
  ``Qwen/Qwen3.6-35B-A3B:peft:262144``) is accepted for every name, with context N;
- vocabulary sizes: the models' published ``config.json`` ``vocab_size`` (text config),
  as the configuration classes of transformers 5 also default to (``qwen3``, ``qwen3_vl``
  151936; ``qwen3_5``/``qwen3_5_moe`` 248320; ``gpt_oss`` 201088; ``deepseek_v3``/``_v4``
  129280; ``glm_moe_dsa``/``glm5_next`` 154880; ``nemotron_h`` 131072); Llama 3 128256
  and Kimi K2 163840 from their model cards. Kimi K3.1's is a guess.

The ``thinkingmachines/Inkling*`` models are tokenized by ``tml-renderers`` (no Hugging
Face tokenizer exists), so they are not offered offline (``NEEDS_TML_RENDERERS``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    """One service model name and what stands in for it offline."""

    name: str
    tokenizer_id: str
    """The hub id the SDK's ``get_tokenizer()`` and the cookbook's ``get_tokenizer`` load."""
    context_length: int
    renderer: str
    """tinker-cookbook's recommended renderer (``renderers.get_renderer(name, tok)``)."""
    tokenizer_family: str
    """Special tokens, chat format and stop tokens: ``tokenizers.families``."""
    vocab_size: int
    """Embedding rows of the real model; the stand-in network has as many."""
    chat_format: str
    """The chat template an offline-built tokenizer carries (``tokenizers.templates``)."""
    is_chat: bool = True
    vision: bool = False
    """Whether the offline backends take images for it (Qwen3-VL, Qwen3.5: their image
    processor is transformers' own; Kimi's and Nemotron's need remote code)."""
    tokenizer_revision: str | None = None
    trust_remote_code: bool = False


_LLAMA_TOKENIZER = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"


def _llama(name: str, renderer: str, is_chat: bool) -> CatalogueEntry:
    # Context: 131072, the Llama 3.1/3.2/3.3 model cards ("card"; the service's is unstated).
    return CatalogueEntry(
        f"meta-llama/{name}",
        _LLAMA_TOKENIZER,
        131072,
        renderer,
        "llama3",
        128256,
        "llama3",
        is_chat=is_chat,
    )


def _qwen3(name: str, context: int, renderer: str, chat_format: str, is_chat: bool = True):
    return CatalogueEntry(
        f"Qwen/{name}",
        f"Qwen/{name}",
        context,
        renderer,
        "qwen3",
        151936,
        chat_format,
        is_chat=is_chat,
        vision="-VL-" in name,
    )


def _qwen3_5(name: str, renderer: str = "qwen3_5", is_chat: bool = True) -> CatalogueEntry:
    # Qwen3.5, 3.6 and 3.8 share one tokenizer (cookbook model_info); 64K context for every
    # bare name (cookbook eval defaults); 262144 as NAME:peft:262144.
    return CatalogueEntry(
        f"Qwen/{name}",
        f"Qwen/{name}",
        65536,
        renderer,
        "qwen3_5",
        248320,
        "qwen3_5",
        is_chat=is_chat,
        vision=True,
    )


def _same(org: str, name: str, context: int, renderer: str, family: str, vocab: int, **kw):
    return CatalogueEntry(
        f"{org}/{name}", f"{org}/{name}", context, renderer, family, vocab, family, **kw
    )


_ENTRIES: tuple[CatalogueEntry, ...] = (
    # Llama 3.x: the cookbook renders base models with role_colon.
    _llama("Llama-3.1-8B-Instruct", "llama3", True),
    _llama("Llama-3.2-1B", "role_colon", False),
    _llama("Llama-3.2-3B", "role_colon", False),
    _llama("Llama-3.1-8B", "role_colon", False),
    _llama("Llama-3.1-70B", "role_colon", False),
    _llama("Llama-3.3-70B-Instruct", "llama3", True),
    # Qwen3: 32768 for the hybrid and base models (Qwen3-8B in the eval defaults; the
    # others share its card's native context); 262144 for 2507 and VL (cards: "256K").
    _qwen3("Qwen3-VL-30B-A3B-Instruct", 262144, "qwen3_vl_instruct", "qwen3_vl_instruct"),
    _qwen3("Qwen3-VL-235B-A22B-Instruct", 262144, "qwen3_vl_instruct", "qwen3_vl_instruct"),
    _qwen3("Qwen3-8B-Base", 32768, "role_colon", "qwen3", is_chat=False),
    _qwen3("Qwen3-30B-A3B-Base", 32768, "role_colon", "qwen3", is_chat=False),
    _qwen3("Qwen3-8B", 32768, "qwen3", "qwen3"),
    _qwen3("Qwen3-32B", 32768, "qwen3", "qwen3"),
    _qwen3("Qwen3-30B-A3B", 32768, "qwen3", "qwen3"),
    _qwen3("Qwen3-4B-Instruct-2507", 262144, "qwen3_instruct", "qwen3_instruct"),
    _qwen3("Qwen3-30B-A3B-Instruct-2507", 262144, "qwen3_instruct", "qwen3_instruct"),
    _qwen3("Qwen3-235B-A22B-Instruct-2507", 262144, "qwen3_instruct", "qwen3_instruct"),
    # Qwen3.5 / 3.6 / 3.8 (tokenizer vocabulary 248,077 of 248,320 rows).
    _qwen3_5("Qwen3.5-4B"),
    _qwen3_5("Qwen3.5-9B"),
    _qwen3_5("Qwen3.5-9B-Base", "role_colon", is_chat=False),
    _qwen3_5("Qwen3.5-27B"),
    _qwen3_5("Qwen3.5-35B-A3B"),
    _qwen3_5("Qwen3.5-35B-A3B-Base", "role_colon", is_chat=False),
    _qwen3_5("Qwen3.5-397B-A17B"),
    _qwen3_5("Qwen3.6-27B"),
    _qwen3_5("Qwen3.6-35B-A3B"),
    _qwen3_5("Qwen3.8-27B", "qwen3_8_xhigh_reasoning"),
    # DeepSeek: V3.1 32K (eval defaults; the base model: guess, the same); V4.1 Flash
    # 256K (eval defaults list only its :peft:262144 id); V4's vocabulary as V3's
    # (transformers' deepseek_v4 config).
    _same("deepseek-ai", "DeepSeek-V3.1", 32768, "deepseekv3", "deepseek_v3", 129280),
    _same(
        "deepseek-ai",
        "DeepSeek-V3.1-Base",
        32768,
        "role_colon",
        "deepseek_v3",
        129280,
        is_chat=False,
    ),
    _same("deepseek-ai", "DeepSeek-V4.1-Flash", 262144, "deepseekv4_1", "deepseek_v4", 129280),
    _same("deepseek-ai", "DeepSeek-V4.1-Flash-1017", 262144, "deepseekv4_1", "deepseek_v4", 129280),
    # gpt-oss: 32K bare, 131072 as :peft:131072 (eval defaults).
    _same("openai", "gpt-oss-20b", 32768, "gpt_oss_no_sysprompt", "o200k_harmony", 201088),
    _same("openai", "gpt-oss-120b", 32768, "gpt_oss_no_sysprompt", "o200k_harmony", 201088),
    # Kimi: 32K (eval defaults for K2.6; K2-Thinking, K2.5 and K3.1: guess, the same).
    # Tokenizer revisions as the SDK pins them; K3.1-Pro's tokenizer is the SDK's
    # "moonshotai/Kimi-K3" (the cookbook uses tml-renderers' KimiK3Tokenizer for it).
    _same(
        "moonshotai",
        "Kimi-K2-Thinking",
        32768,
        "kimi_k2",
        "kimi",
        163840,
        tokenizer_revision="612681931a8c906ddb349f8ad0f582cb552189cd",
        trust_remote_code=True,
    ),
    _same(
        "moonshotai",
        "Kimi-K2.5",
        32768,
        "kimi_k25",
        "kimi",
        163840,
        tokenizer_revision="4d01dfe0332d63057c186e0b262165819efb6611",
        trust_remote_code=True,
    ),
    _same(
        "moonshotai",
        "Kimi-K2.6",
        32768,
        "kimi_k26",
        "kimi",
        163840,
        tokenizer_revision="b5aabbfb20227ed42becbf5541dbffd213942c58",
        trust_remote_code=True,
    ),
    dataclasses.replace(
        _same(
            "moonshotai",
            "Kimi-K3.1-Pro",
            32768,
            "kimi_k31_pro_max_reasoning",
            "kimi_k3",
            163840,
            tokenizer_revision="f831ab66814297da540d832a5235f8e904f29d06",
            trust_remote_code=True,
        ),
        tokenizer_id="moonshotai/Kimi-K3",
    ),
    # GLM 5.3: 256K (eval defaults list only the :peft:262144 ids).
    _same("zai-org", "GLM-5.3", 262144, "glm5_3_max_reasoning", "glm", 154880),
    _same("zai-org", "GLM-5.3-Flash", 262144, "glm5_3_max_reasoning", "glm", 154880),
    # Nemotron 3 / 3.5: 64K bare, 262144 as :peft:262144 (eval defaults).
    _same("nvidia", "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", 65536, "nemotron3", "nemotron", 131072),
    _same(
        "nvidia", "NVIDIA-Nemotron-3-Super-120B-A12B-BF16", 65536, "nemotron3", "nemotron", 131072
    ),
    _same(
        "nvidia",
        "NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16",
        65536,
        "nemotron3_ultra",
        "nemotron",
        131072,
    ),
    _same(
        "nvidia",
        "NVIDIA-Nemotron-3.5-Lightning-30B-A3B-BF16",
        65536,
        "nemotron3_ultra",
        "nemotron",
        131072,
    ),
    _same(
        "nvidia",
        "NVIDIA-Nemotron-3.5-Super-VL-120B-A12B-BF16",
        65536,
        "nemotron3_ultra",
        "nemotron",
        131072,
    ),
)

CATALOGUE: dict[str, CatalogueEntry] = {entry.name: entry for entry in _ENTRIES}
"""Every service model name the offline backends stand in for, by name."""

NEEDS_TML_RENDERERS: tuple[str, ...] = (
    "thinkingmachines/Inkling",
    "thinkingmachines/Inkling-Small",
    "thinkingmachines/Inkling-2-Small",
)
"""Service models whose tokenizer only ``tml-renderers`` provides: not offered offline."""

_VARIANT = re.compile(r"^(?P<base>[^:]+):peft:(?P<context>[1-9][0-9]*)$")


def service_model_names() -> tuple[str, ...]:
    """The catalogue's names, in the cookbook's order."""
    return tuple(CATALOGUE)


def base_name(name: str) -> str:
    """``name`` without a service variant suffix (``:peft:262144``)."""
    match = _VARIANT.match(name)
    return match["base"] if match else name


def lookup(name: str) -> CatalogueEntry | None:
    """The entry of ``name`` (or of its ``NAME:peft:N`` variant, context N), else None.

    Example:
        >>> lookup("Qwen/Qwen3.6-35B-A3B:peft:262144").context_length
        262144
    """
    entry = CATALOGUE.get(name)
    if entry is not None:
        return entry
    match = _VARIANT.match(name)
    if match is None or match["base"] not in CATALOGUE:
        return None
    return dataclasses.replace(
        CATALOGUE[match["base"]], name=name, context_length=int(match["context"])
    )
