"""Base models for export: a local HF folder, or a built-in model. Never downloads.

``tinkerkit/tiny`` and the stand-ins of the service's model names (the ``local``
backend's small Llama sized to each model's vocabulary, with its tokenizer) are written
once, by ``tinkerkit.models.tiny_hf.export_base``, into a cache folder under
``TINKERKIT_HOME`` whose name carries a hash of the model's config, so a change of the
built-in model never reuses a stale copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tinkerkit.export.base_files import base_file
from tinkerkit.export.errors import BaseModelError
from tinkerkit.models.catalogue import lookup
from tinkerkit.models.mapping import find, model_mapping
from tinkerkit.models.registry import BUILTINS, TINY
from tinkerkit.paths import tinkerkit_home

logger = logging.getLogger("tinkerkit")


def is_builtin(name: str) -> bool:
    """Whether ``name`` is the built-in model or a service name stood in for offline."""
    return name in BUILTINS or lookup(name) is not None


def resolve_base(base: str | Path) -> Path:
    """The local folder (config.json + safetensors) of base model ``base``.

    A folder is used as it is; a name mapped to a model folder (``$TINKERKIT_MODELS``)
    is that folder; ``tinkerkit/tiny`` and the service names' stand-ins are exported to a
    cache folder; anything else is a ``BaseModelError``.

    Example:
        >>> resolve_base("tinkerkit/tiny").joinpath("config.json").is_file()
        True
    """
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "config.json").is_symlink():
            raise BaseModelError(
                f"{path} has no config.json; point at a Hugging Face model folder "
                "(config.json, *.safetensors, tokenizer files)."
            )
        base_file(path, "config.json", "the model config")
        return path
    name = str(base)
    mapped = find(model_mapping(), name)  # $TINKERKIT_MODELS: the real model of that name
    if mapped is not None and mapped.kind == "model":
        return mapped.path
    if is_builtin(name):
        if name not in BUILTINS:
            logger.warning(
                "%s is not available offline; using the built-in stand-in the local backend "
                "trains for it. For an adapter trained on the real %s, pass a local folder "
                "of that model.",
                name,
                name,
            )
        return _builtin_dir(name)
    raise BaseModelError(
        f"Base model {name!r} was not found: it is neither a local folder nor {TINY!r}. "
        "tinkerkit never downloads models; download it yourself (e.g. `hf download "
        f"{name} --local-dir DIR`) and pass --base-model DIR."
    )


def _builtin_dir(name: str) -> Path:
    from tinkerkit.models import tiny_hf as models
    from tinkerkit.models.stand_ins import ModelNames

    names = ModelNames()
    source, _ = models.find_source(name, names)
    if source.stand_in:
        config, label = models.stand_in_base_config(source, names), f"{source.family}"
    else:
        config, label = models.find_source(name, names)[1], name.rsplit("/", 1)[-1]
    identity = config.to_json_string() + f"{source.family}:{source.vocab}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    target = tinkerkit_home() / "export" / "bases" / f"{label}-{digest}"
    if (target / "config.json").is_file():
        return target
    try:
        return models.export_base(name, target, names)
    except (FileExistsError, OSError):
        if (target / "config.json").is_file():  # another process wrote it first
            return target
        raise


def read_config(base_dir: Path) -> dict[str, Any]:
    """``config.json`` of a model folder, as a dict (``BaseModelError`` if it is not one)."""
    path = base_file(base_dir, "config.json", "the model config")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BaseModelError(
            f"{path} is not valid JSON ({type(exc).__name__}: {exc}); use a clean copy of the model."
        ) from None
    if not isinstance(data, dict):
        raise BaseModelError(f"{path} is not a JSON object; use a clean copy of the model.")
    return data
