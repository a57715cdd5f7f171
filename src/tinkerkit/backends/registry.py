"""Offline backends by name, imported on first use (``local`` needs the ``local`` extra)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from tinkerkit.backends.engine import EngineFactory
from tinkerkit.errors import BackendNotConfiguredError, UnknownBackendError
from tinkerkit.errors import BackendUnavailableError as BackendUnavailableError

# name -> "module:callable" returning an EngineFactory; imported on first use, so
# `mock` never pays for torch.
_FACTORIES: dict[str, str] = {
    "mock": "tinkerkit.backends.mock.engine:MockFactory",
    "local": "tinkerkit.backends.local.engine:LocalFactory",
}


def offline_backends() -> list[str]:
    return sorted(_FACTORIES)


ENV_BACKEND = "TINKERKIT_BACKEND"
ENV_API_KEY = "TINKER_API_KEY"


def resolve_backend(backend: str | None) -> str:
    """Explicit argument, else ``$TINKERKIT_BACKEND``, else ``tinker`` if a key is set.

    Never falls back silently: with none of those, ``BackendNotConfiguredError``.
    """
    name = backend or os.environ.get(ENV_BACKEND) or None
    if name is None:
        if os.environ.get(ENV_API_KEY):
            return "tinker"
        raise BackendNotConfiguredError()
    name = name.strip().lower()
    known = ["tinker", *offline_backends()]
    if name not in known:
        raise UnknownBackendError(name, known)
    return name


def backend_of_path(path: str) -> str | None:
    """The offline backend a ``tinker://`` path's run belongs to, or None.

    Offline run ids are ``<backend>-<hex>`` (``CheckpointStore.create_run``), so the path
    itself names its backend; a service path (or anything else) gives None.

    Example:
        >>> backend_of_path("tinker://local-23ff83637c634da0/sampler_weights/final")
        'local'
    """
    if not isinstance(path, str) or not path.startswith("tinker://"):
        return None
    run = path[len("tinker://") :].split("/", 1)[0]
    name, dash, rest = run.partition("-")
    return name if dash and rest and name in _FACTORIES else None


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
