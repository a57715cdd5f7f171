"""Names of the models the offline backends know, and what stands in for them.

``tinkerkit/tiny`` is the built-in model (byte-level tokenizer). The offline backends
also accept every service model name of the catalogue (``catalogue.py``): a tiny random
network sized to that model's vocabulary, with that model's real tokenizer
(``tokenizers``), stands in for it (logged once), so a script written for the service
runs unchanged offline, on the service's token ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinkerkit.errors import UnknownModelError
from tinkerkit.models.catalogue import NEEDS_TML_RENDERERS, base_name, service_model_names

if TYPE_CHECKING:
    from tinkerkit.rules.images import Vision

logger = logging.getLogger("tinkerkit")

TINY = "tinkerkit/tiny"
TINY_VL = "tinkerkit/tiny-vl"
"""The built-in vision-language model: the byte tokenizer with Qwen's three vision
tokens, a tiny Qwen3-VL on ``local`` (``tiny_hf``), images as the mock reads them on
``mock``."""
BUILTINS = (TINY, TINY_VL)

SERVICE_MODELS: tuple[str, ...] = service_model_names()
"""The service's model names (tinker-cookbook 0.6.1's ``model_info``), from the catalogue."""


@dataclass(frozen=True)
class ModelSpec:
    """What the clients need to know about a base model."""

    name: str
    """The name the user asked for (kept in checkpoints and ``get_info``)."""
    arch: str
    vocab_size: int
    max_context_length: int
    stands_in_for: str | None = None
    """The service model this offline model replaces, if any."""
    family: str | None = None
    """The tokenizer family of a stand-in (``tokenizers.families``); None for tiny and
    for real models."""
    vision: Vision | None = None
    """How the model reads images (``rules.images``); None for a text-only model."""


_announced: set[tuple[str, str]] = set()


def announce_stand_in(backend: str, spec: ModelSpec) -> None:
    """Warn, once per process, that a tiny network stands in for a service model (a
    WARNING, so it shows without logging set up: samples are noise until trained)."""
    requested = spec.stands_in_for or spec.name
    key = (backend, requested)
    if key not in _announced:
        _announced.add(key)
        logger.warning(
            "%s backend: %s is not available offline; a tiny random network with its "
            "vocabulary (%s tokens) and its tokenizer stands in for it (same API and token "
            "ids; samples are noise until trained).",
            backend,
            requested,
            f"{spec.vocab_size:,}",
        )


def unknown_model_error(name: str, known: Iterable[str], *, extra: str = "") -> UnknownModelError:
    """``UnknownModelError`` listing ``known`` and saying how to add a model."""
    error = UnknownModelError(name, known)
    if base_name(name) in NEEDS_TML_RENDERERS:
        error.message += (
            f" {base_name(name)} is tokenized by tml-renderers only, which has no offline "
            "tokenizer: it is not offered offline."
        )
    error.message += (
        f"{extra} To add a model, map its name to a local Hugging Face model or tokenizer "
        f"folder: tk.connect(backend, models={{{name!r}: PATH}}), "
        f"TINKERKIT_MODELS='{name}=PATH' or tinkerkit serve --model {name}=PATH."
    )
    return error


def check_model_name(name: str, known: tuple[str, ...]) -> None:
    """Raise ``UnknownModelError`` (listing ``known``) unless ``name`` is one of them."""
    if name not in known:
        raise unknown_model_error(name, known)
