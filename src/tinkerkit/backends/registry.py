"""Offline backends by name. ``local`` registers itself when its extra is installed."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tinkerkit.backends.engine import EngineFactory

# name -> "module:callable" returning an EngineFactory; imported on first use, so
# `mock` never pays for torch.
_FACTORIES: dict[str, str] = {
    "mock": "tinkerkit.backends.mock.engine:MockFactory",
}


def offline_backends() -> list[str]:
    return sorted(_FACTORIES)


def register(name: str, target: str) -> None:
    """Register an offline backend: ``target`` is ``"module:callable"``."""
    _FACTORIES[name] = target


def engine_factory(name: str) -> EngineFactory:
    module_name, attr = _FACTORIES[name].split(":")
    maker: Callable[[], EngineFactory] = getattr(importlib.import_module(module_name), attr)
    return maker()
