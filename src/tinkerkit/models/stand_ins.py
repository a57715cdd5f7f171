"""The model names an offline backend knows, and their tokenizers: shared by ``mock`` and
``local`` so the two cannot disagree on a name, a vocabulary size or a token id.

Example:
    >>> names = ModelNames()                      # + $TINKERKIT_MODELS
    >>> names.vocab_size("Qwen/Qwen3-8B"), names.tokenizer_id("Qwen/Qwen3-8B")
    (151936, 'Qwen/Qwen3-8B')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tinkerkit.models import catalogue
from tinkerkit.models.catalogue import CatalogueEntry
from tinkerkit.models.mapping import MappedModel, find, model_mapping
from tinkerkit.models.registry import BUILTINS, SERVICE_MODELS, TINY_VL, unknown_model_error
from tinkerkit.models.tokenizer import tiny_vl_vision
from tinkerkit.models.tokenizers import ResolvedTokenizer, resolve
from tinkerkit.models.tokenizers.families import family
from tinkerkit.rules.images import Processor, Vision


class ModelNames:
    """``tinkerkit/tiny``, the catalogue and the user's mapping (``models=`` over
    ``$TINKERKIT_MODELS``), with each name's tokenizer."""

    def __init__(self, models: Mapping[str, str | os.PathLike[str]] | None = None) -> None:
        self.mapping: dict[str, MappedModel] = model_mapping(models)

    def known(self) -> list[str]:
        extra = [n for n in self.mapping if n not in BUILTINS and n not in catalogue.CATALOGUE]
        return [*BUILTINS, *SERVICE_MODELS, *extra]

    def mapped(self, name: str) -> MappedModel | None:
        return find(self.mapping, name)

    def entry(self, name: str) -> CatalogueEntry | None:
        return catalogue.lookup(name)

    def check(self, name: str, *, extra: str = "") -> None:
        """Refuse a name that is neither tiny, in the catalogue nor mapped."""
        if name not in BUILTINS and self.entry(name) is None and self.mapped(name) is None:
            raise unknown_model_error(name, self.known(), extra=extra)

    def resolved(self, name: str) -> ResolvedTokenizer:
        return resolve(name, self.mapping)

    def tokenizer(self, name: str) -> Any:
        return self.resolved(name).tokenizer

    def stop_tokens(self, name: str) -> list[int]:
        return list(self.resolved(name).stop_tokens)

    def tokenizer_id(self, name: str) -> str:
        """What ``get_info`` names, without loading the tokenizer: a mapped path, the
        catalogue's hub id, or the byte tokenizer's id for tiny."""
        mapped = self.mapped(name)
        if mapped is not None:
            return str(mapped.path)
        entry = self.entry(name)
        if entry is not None:
            return entry.tokenizer_id
        return self.resolved(name).tokenizer_id

    def vocab_size(self, name: str) -> int:
        """Embedding rows: a mapped model's config, the catalogue's, or the size of a
        mapped tokenizer for a name outside the catalogue."""
        mapped = self.mapped(name)
        if mapped is not None and mapped.kind == "model":
            return int(_text_config(mapped)["vocab_size"])
        entry = self.entry(name)
        if entry is not None:
            return entry.vocab_size
        return len(self.tokenizer(name))

    def context_length(self, name: str, default: int) -> int:
        entry = self.entry(name)
        if entry is not None:
            return entry.context_length
        mapped = self.mapped(name)
        if mapped is not None and mapped.kind == "model":
            return int(_text_config(mapped).get("max_position_embeddings") or default)
        return default

    def vision(self, name: str) -> Vision | None:
        """How ``name`` reads images: tiny-vl, the catalogue's Qwen vision models (their
        vision token ids from the tokenizer), a mapped folder whose config has a
        ``vision_config``; None for a text-only model."""
        entry = self.entry(name)
        mapped = self.mapped(name)
        if mapped is not None and mapped.kind == "model":
            return folder_vision(json.loads((mapped.path / "config.json").read_text()), mapped.path)
        if name == TINY_VL:
            return tiny_vl_vision()
        if entry is None or not entry.vision:
            return None
        # the family's published ids: naming a model never loads its tokenizer
        fam = family(entry.tokenizer_family)
        ids = {token: i for i, token in (fam.specials if fam else ())}
        return Vision(ids["<|image_pad|>"], ids["<|vision_start|>"], ids["<|vision_end|>"])

    def family(self, name: str) -> str:
        entry = self.entry(name)
        return entry.tokenizer_family if entry is not None else f"mapped:{name}"


def folder_vision(config: Mapping[str, Any], folder: Path | None) -> Vision | None:
    """How an HF vision-language model reads images: the vision token ids of its
    ``config`` and the processor of ``folder``'s ``preprocessor_config.json`` (Qwen's
    when there is none); None for a model without a ``vision_config``.

    Example:
        >>> folder_vision({"vision_config": {}, "image_token_id": 262,
        ...                "vision_start_token_id": 261, "vision_end_token_id": 263}, None)
        Vision(image_token=262, start_token=261, end_token=263, processor=Processor(...))
    """
    if not config.get("vision_config") or "image_token_id" not in config:
        return None
    found = folder / "preprocessor_config.json" if folder is not None else None
    processor = Processor()
    if found is not None and found.is_file():
        processor = Processor.of(json.loads(found.read_text()))
    return Vision(
        int(config["image_token_id"]),
        int(config["vision_start_token_id"]),
        int(config["vision_end_token_id"]),
        processor,
    )


def _text_config(mapped: MappedModel) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((mapped.path / "config.json").read_text())
    text = config.get("text_config")
    return text if isinstance(text, dict) and "vocab_size" in text else config
