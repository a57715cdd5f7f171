"""Base models for export: a local HF folder, or the built-in tiny model. Never downloads.

``tinkerkit/tiny`` (and the service model names it stands in for offline) is written
once, by ``tinkerkit.backends.local.models.export_base``, into a cache folder under
``TINKERKIT_HOME`` whose name carries a hash of the tiny config, so a change of the
built-in model never reuses a stale copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from tinkerkit.export.errors import BaseModelError
from tinkerkit.models.registry import SERVICE_MODELS, TINY
from tinkerkit.paths import tinkerkit_home

logger = logging.getLogger("tinkerkit")


def is_builtin(name: str) -> bool:
    """Whether ``name`` is the built-in model or a service name it stands in for offline."""
    return name == TINY or name in SERVICE_MODELS


def resolve_base(base: str | Path) -> Path:
    """The local folder (config.json + safetensors) of base model ``base``.

    A folder is used as it is; ``tinkerkit/tiny`` and the service names it stands in
    for are exported to a cache folder; anything else is a ``BaseModelError``.

    Example:
        >>> resolve_base("tinkerkit/tiny").joinpath("config.json").is_file()
        True
    """
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelError(
                f"{path} has no config.json; point at a Hugging Face model folder "
                "(config.json, *.safetensors, tokenizer files)."
            )
        return path
    name = str(base)
    if is_builtin(name):
        if name != TINY:
            logger.warning(
                "%s is not available offline; using the built-in %s that stands in for it. "
                "For an adapter trained on the real %s, pass a local folder of that model.",
                name,
                TINY,
                name,
            )
        return _tiny_dir()
    raise BaseModelError(
        f"Base model {name!r} was not found: it is neither a local folder nor {TINY!r}. "
        "tinkerkit never downloads models; download it yourself (e.g. `hf download "
        f"{name} --local-dir DIR`) and pass --base-model DIR."
    )


def _tiny_dir() -> Path:
    from tinkerkit.backends.local import models

    digest = hashlib.sha256(models.tiny_config().to_json_string().encode()).hexdigest()[:12]
    target = tinkerkit_home() / "export" / "bases" / f"tiny-{digest}"
    if (target / "config.json").is_file():
        return target
    try:
        return models.export_base(TINY, target)
    except (FileExistsError, OSError):
        if (target / "config.json").is_file():  # another process wrote it first
            return target
        raise


def read_config(base_dir: Path) -> dict[str, Any]:
    """``config.json`` of a model folder, as a dict."""
    data: dict[str, Any] = json.loads((base_dir / "config.json").read_text())
    return data
