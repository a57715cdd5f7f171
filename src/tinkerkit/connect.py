"""``tk.connect``: pick a backend and get a Tinker ``ServiceClient`` for it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tinkerkit.backends.registry import engine_factory, offline_backends
from tinkerkit.errors import BackendNotConfiguredError, MissingAPIKeyError, UnknownBackendError

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


def connect(
    backend: str | None = None,
    *,
    latency: float = 0.0,
    faults: Iterable[Any] = (),
    **kwargs: Any,
) -> Any:
    """A ``ServiceClient`` for ``backend``: ``"tinker"``, ``"mock"`` or ``"local"``.

    ``"tinker"`` returns the official ``tinker.ServiceClient(**kwargs)`` untouched. The
    offline backends return tinkerkit's clients with the same methods and types;
    ``latency`` simulates a network round trip per request, ``faults`` injects
    failures (see ``tinkerkit.testing``).

    Example:
        >>> service = tk.connect("mock")
        >>> training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
    """
    name = resolve_backend(backend)
    if name == "tinker":
        if latency or faults:
            raise ValueError(
                "latency= and faults= simulate a network; they are for offline backends"
            )
        if not (kwargs.get("api_key") or os.environ.get(ENV_API_KEY)):
            raise MissingAPIKeyError()
        import tinker

        return tinker.ServiceClient(**kwargs)

    from tinkerkit.backends.context import OfflineContext
    from tinkerkit.backends.faults import FaultInjector
    from tinkerkit.backends.service_client import ServiceClient

    if kwargs:
        raise TypeError(f"unexpected options for the {name!r} backend: {', '.join(sorted(kwargs))}")
    context = OfflineContext(
        factory=engine_factory(name), latency=float(latency), faults=FaultInjector(faults)
    )
    return ServiceClient(context)
