"""Base models of the ``local`` backend: loaded once per process on ``device()`` and
shared, frozen, by every engine built on them.

What the built-in bases are (the tiny Llama, the service models' stand-ins) and where a
name's weights come from (mapped and local HF folders, the HF cache) is
:mod:`tinkerkit.models.tiny_hf`; those names stay importable from here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    PreTrainedModel,
)

from tinkerkit.models.registry import ModelSpec
from tinkerkit.models.stand_ins import ModelNames, folder_vision
from tinkerkit.models.tiny_hf import (
    STAND_IN_POSITIONS,
    TINY_ARCH,
    TINY_SEED,
    Source,
    _named,
    _to,
    build_builtin,
    build_stand_in,
    build_tiny,
    export_base,
    find_source,
    stand_in_base_config,
    stand_in_config,
    tiny_config,
    tokenizer,
)

__all__ = [
    "STAND_IN_POSITIONS",
    "TINY_ARCH",
    "TINY_SEED",
    "Source",
    "base_model",
    "build_stand_in",
    "build_tiny",
    "device",
    "export_base",
    "find_source",
    "known_models",
    "spec_for",
    "stand_in_base_config",
    "stand_in_config",
    "stop_tokens",
    "tiny_config",
    "tokenizer",
    "tokenizer_id",
]


def device() -> torch.device:
    """CUDA when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def known_models(names: ModelNames | None = None) -> list[str]:
    """The model names the ``local`` backend always knows (besides folders and the HF cache)."""
    return (names or ModelNames()).known()


def spec_for(source: Source, config: Any, names: ModelNames | None = None) -> ModelSpec:
    """The ``ModelSpec`` the clients see for a resolved source."""
    names = names or ModelNames()
    if source.stand_in:
        assert source.vocab is not None
        return ModelSpec(
            name=source.name,
            arch=TINY_ARCH,
            vocab_size=source.vocab,
            max_context_length=names.context_length(source.name, 2048),
            stands_in_for=source.name,
            family=source.family,
            vision=names.vision(source.name),
        )
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if source.builtin:
        return ModelSpec(
            name=source.name,
            arch=str(config.model_type),
            vocab_size=int(text.vocab_size),
            max_context_length=int(text.max_position_embeddings),
            vision=names.vision(source.name),
        )
    max_len = getattr(text, "max_position_embeddings", None) or 2048
    folder = Path(source.path) if source.path else None
    return ModelSpec(
        name=source.name,
        arch=str(getattr(config, "model_type", "unknown")),
        vocab_size=int(text.vocab_size),
        max_context_length=int(max_len),
        # a folder's own processor; a cached hub id (not a folder) gets Qwen's
        vision=folder_vision(config.to_dict(), folder if folder and folder.is_dir() else None),
    )


_lock = threading.Lock()
_bases: dict[tuple[Any, ...], PreTrainedModel] = {}


def _base_key(source: Source, dev: torch.device) -> tuple[Any, ...]:
    if source.stand_in:
        return ("stand-in", source.family, source.vocab, str(dev))
    return (source.path or source.name, str(dev))


def base_model(source: Source, names: ModelNames | None = None) -> PreTrainedModel:
    """The shared, frozen base model of ``source`` on ``device()`` (cached per process:
    every engine on one base shares one copy of its weights)."""
    dev = device()
    key = _base_key(source, dev)
    with _lock:
        model = _bases.get(key)
        if model is None:
            if source.stand_in:
                model = build_stand_in(source, names or ModelNames())
            elif source.path is None:
                model = build_builtin(source.name)
            else:
                # float32 on CPU; on a GPU keep the checkpoint's own (half) precision.
                dtype = torch.float32 if dev.type == "cpu" else "auto"
                config = AutoConfig.from_pretrained(source.path, local_files_only=True)
                auto: Any = AutoModelForCausalLM
                if getattr(config, "vision_config", None) is not None:
                    auto = AutoModelForImageTextToText
                model = auto.from_pretrained(source.path, dtype=dtype, local_files_only=True)
            model = cast(PreTrainedModel, _to(model, dev).eval())
            model.requires_grad_(False)
            _bases[key] = model
        return model


def tokenizer_id(source: Source, names: ModelNames | None = None) -> str:
    """What ``get_info`` names as the tokenizer of ``source``."""
    names = names or ModelNames()
    if _named(source, names) or source.path is None:
        return names.tokenizer_id(source.name)
    return source.path


def stop_tokens(source: Source, names: ModelNames | None = None) -> list[int]:
    """End-of-generation token ids: the tokenizer's EOS and the generation config's."""
    names = names or ModelNames()
    if _named(source, names) or source.path is None:
        return names.stop_tokens(source.name)
    ids: list[int] = []
    eos = tokenizer(source, names).eos_token_id
    if eos is not None:
        ids.append(int(eos))
    gen = getattr(base_model(source, names), "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    for token in extra if isinstance(extra, list) else [extra]:
        if token is not None and int(token) not in ids:
            ids.append(int(token))
    return ids
