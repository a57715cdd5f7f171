"""Names of the models the offline backends know, and what stands in for them.

``tinkerkit/tiny`` is the built-in model. The offline backends also accept the Tinker
service's model names and stand the tiny model in for them (logged once), so a script
written for the service runs unchanged offline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tinkerkit.errors import UnknownModelError

logger = logging.getLogger("tinkerkit")

TINY = "tinkerkit/tiny"

# Models the Tinker service offers (tinker 0.38 era); offline, the tiny model stands in.
SERVICE_MODELS: tuple[str, ...] = (
    "meta-llama/Llama-3.2-1B",
    "meta-llama/Llama-3.2-3B",
    "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B",
    "meta-llama/Llama-3.3-70B-Instruct",
    "Qwen/Qwen3-4B-Instruct-2507",
    "Qwen/Qwen3-8B",
    "Qwen/Qwen3-8B-Base",
    "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-30B-A3B-Base",
    "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "Qwen/Qwen3-32B",
    "Qwen/Qwen3-235B-A22B-Instruct-2507",
    "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "openai/gpt-oss-20b",
    "openai/gpt-oss-120b",
    "deepseek-ai/DeepSeek-V3.1",
)


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


_announced: set[tuple[str, str]] = set()


def announce_stand_in(backend: str, requested: str) -> None:
    """Log, once per process, that the tiny model replaces a service model."""
    key = (backend, requested)
    if key not in _announced:
        _announced.add(key)
        logger.info(
            "%s backend: %s is not available offline; the built-in %s stands in for it "
            "(same API, tiny random model, byte-level tokenizer).",
            backend,
            requested,
            TINY,
        )


def check_model_name(name: str, known: tuple[str, ...]) -> None:
    """Raise ``UnknownModelError`` (listing ``known``) unless ``name`` is one of them."""
    if name not in known:
        raise UnknownModelError(name, known)
