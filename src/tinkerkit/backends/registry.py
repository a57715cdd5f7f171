"""Offline backends by name, imported on first use (``local`` needs the ``local`` extra)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tinkerkit.backends.engine import EngineFactory
from tinkerkit.errors import TinkerkitError


class BackendUnavailableError(TinkerkitError, ImportError):
    def __init__(self, name: str, cause: ImportError) -> None:
        super().__init__(
            f"The {name!r} backend needs packages that are not installed ({cause}). "
            f"Install them with: pip install 'tinkerkit[{name}]'"
        )


# name -> "module:callable" returning an EngineFactory; imported on first use, so
# `mock` never pays for torch.
_FACTORIES: dict[str, str] = {
    "mock": "tinkerkit.backends.mock.engine:MockFactory",
    "local": "tinkerkit.backends.local.engine:LocalFactory",
}


def offline_backends() -> list[str]:
    return sorted(_FACTORIES)


def register(name: str, target: str) -> None:
    """Register an offline backend: ``target`` is ``"module:callable"``."""
    _FACTORIES[name] = target


def engine_factory(name: str, **options: Any) -> EngineFactory:
    """The factory of backend ``name``; ``options`` go to its constructor (the built-in
    ones take ``models=``, the user's model mapping)."""
    module_name, attr = _FACTORIES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(name, exc) from exc
    maker: Callable[..., EngineFactory] = getattr(module, attr)
    return maker(**options)
