"""The user's model mapping: service model name → a local Hugging Face folder or tokenizer.

Given as ``tk.connect(backend, models={"Qwen/Qwen3-8B": "/models/qwen3-8b"})``, as
``TINKERKIT_MODELS="Qwen/Qwen3-8B=/models/qwen3-8b;meta-llama/Llama-3.2-1B=/tok/llama"``
or as ``tinkerkit serve --model NAME=PATH`` (repeatable); the Python argument and the
flag override the environment name by name. PATH is one of:

- a model folder (``config.json`` and weights): the ``local`` backend trains that real
  model under the service name; ``mock`` uses its tokenizer and vocabulary size;
- a tokenizer folder (``tokenizer.json`` or ``tokenizer_config.json``, no weights) or a
  ``tokenizer.json`` file: the stand-in network uses that tokenizer.

A name outside the catalogue becomes a known model of the backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tinkerkit.errors import ModelMappingError

ENV_MODELS = "TINKERKIT_MODELS"
_WEIGHTS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.pt")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_FORMAT = (
    "expected NAME=PATH, PATH a Hugging Face model folder (config.json and weights), a "
    "tokenizer folder or a tokenizer.json file"
)


@dataclass(frozen=True)
class MappedModel:
    """One mapping entry: ``name`` → ``path``, a ``model`` folder or a ``tokenizer``."""

    name: str
    path: Path
    kind: Literal["model", "tokenizer"]


def _classify(name: str, raw: str | os.PathLike[str], where: str) -> MappedModel:
    path = Path(raw).expanduser()
    if not path.exists():
        raise ModelMappingError(f"{where}: {name}={raw}: no such file or folder ({_FORMAT}).")
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".json":
            raise ModelMappingError(f"{where}: {name}={raw} is a file but not a tokenizer.json.")
        return MappedModel(name, path, "tokenizer")
    has_weights = any(next(path.glob(pattern), None) for pattern in _WEIGHTS)
    if (path / "config.json").is_file() and has_weights:
        return MappedModel(name, path, "model")
    if any((path / f).is_file() for f in _TOKENIZER_FILES):
        return MappedModel(name, path, "tokenizer")
    raise ModelMappingError(f"{where}: {name}={raw}: the folder holds neither ({_FORMAT}).")


def parse_pairs(entries: Iterable[str], where: str) -> dict[str, str]:
    """``["NAME=PATH", ...]`` as a dict (the flag's and the variable's syntax).

    Example:
        >>> parse_pairs(["Qwen/Qwen3-8B=/m/qwen"], "--model")
        {'Qwen/Qwen3-8B': '/m/qwen'}
    """
    pairs: dict[str, str] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        name, sep, path = entry.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ModelMappingError(f"{where}: {entry!r}: {_FORMAT}.")
        pairs[name.strip()] = path.strip()
    return pairs


def model_mapping(
    models: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, MappedModel]:
    """``$TINKERKIT_MODELS`` overlaid with ``models``, each entry checked and classified.

    Example:
        >>> model_mapping({"Qwen/Qwen3-8B": "/models/qwen3-8b"})["Qwen/Qwen3-8B"].kind
        'model'
    """
    env = os.environ if environ is None else environ
    merged: dict[str, tuple[str | os.PathLike[str], str]] = {
        name: (path, ENV_MODELS)
        for name, path in parse_pairs(env.get(ENV_MODELS, "").split(";"), ENV_MODELS).items()
    }
    for name, path in (models or {}).items():
        merged[str(name)] = (path, "models=")
    return {name: _classify(name, path, where) for name, (path, where) in merged.items()}


def find(mapping: Mapping[str, MappedModel], name: str) -> MappedModel | None:
    """The entry for ``name``, or for its base name (``NAME:peft:N`` → ``NAME``)."""
    from tinkerkit.models.catalogue import base_name

    return mapping.get(name) or mapping.get(base_name(name))
