"""``tk.connect``: pick a backend and get the SDK's own ``tinker.ServiceClient`` for it."""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import tinker

# resolve_backend and the variables it reads live with the backends (the service
# resolves names too, and backends import nothing above them).
from tinkerkit.backends.registry import (
    ENV_API_KEY,
    ENV_BACKEND,
    engine_factory,
    offline_backends,
    resolve_backend,
)
from tinkerkit.errors import MissingAPIKeyError

__all__ = [
    "ENV_API_KEY",
    "ENV_BACKEND",
    "Connection",
    "connect",
    "connection_of",
    "offline_backends",
    "resolve_backend",
    "rest_client",
]


@dataclass(frozen=True)
class Connection:
    """Where an offline ``ServiceClient`` is served: the process's own service."""

    backend: str
    base_url: str
    api_key: str

    def __repr__(self) -> str:  # never print the key
        return f"<tinkerkit Connection {self.backend} at {self.base_url}>"


_connections: weakref.WeakKeyDictionary[tinker.ServiceClient, Connection] = (
    weakref.WeakKeyDictionary()
)


def _warn_here(message: str, category: type[Warning]) -> None:
    """The service's warnings about this process's requests, as Python warnings here."""
    warnings.warn_explicit(message, category, "<tinkerkit service>", 0, module="tinkerkit")


def _offline(
    name: str,
    *,
    latency: float = 0.0,
    faults: Iterable[Any] = (),
    models: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Connection:
    from tinkerkit.paths import check_home_writable
    from tinkerkit.server.inprocess import local_server
    from tinkerkit.server.service import Service

    check_home_writable()
    options = {"models": models} if models else {}
    service = Service(
        engine_factory(name, **options), latency=latency, faults=faults, warn=_warn_here
    )
    server = local_server()
    return Connection(name, server.base_url, server.add(service))


def connect(
    backend: str | None = None,
    *,
    latency: float = 0.0,
    faults: Iterable[Any] = (),
    user_metadata: dict[str, str] | None = None,
    project_id: str | None = None,
    display_name: str | None = None,
    models: Mapping[str, str | os.PathLike[str]] | None = None,
    **kwargs: Any,
) -> tinker.ServiceClient:
    """The SDK's ``tinker.ServiceClient`` for ``backend``: ``"tinker"``, ``"mock"`` or ``"local"``.

    ``"tinker"`` is the real service (every keyword goes to ``tinker.ServiceClient``).
    ``"mock"`` and ``"local"`` give the same class, pointed at tinkerkit's Tinker service
    running in this process (started on first use, on loopback, under a fresh key):
    ``latency`` simulates a network round trip per request, ``faults`` fails chosen
    requests (``tinkerkit.testing``), and ``models`` maps model names to local Hugging
    Face folders (over ``$TINKERKIT_MODELS``): a model folder is trained under that name
    by ``local``, a tokenizer folder or ``tokenizer.json`` is the name's tokenizer.

    Example:
        >>> with tk.connect("mock") as service:
        ...     training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
        >>> tk.connect("local", models={"Qwen/Qwen3-8B": "/models/Qwen3-8B"})
    """
    name = resolve_backend(backend)
    given: dict[str, Any] = {
        "user_metadata": user_metadata,
        "project_id": project_id,
        "display_name": display_name,
    }
    session = {k: v for k, v in given.items() if v is not None}
    if name == "tinker":
        if latency or faults or models:
            raise ValueError(
                "latency=, faults= and models= are for the offline backends (they simulate "
                "a network, or stand local models in for the service's)"
            )
        api_key = kwargs.get("api_key") or os.environ.get(ENV_API_KEY)
        if not api_key:
            raise MissingAPIKeyError()
        # The service, or a server of one's own (tinkerkit serve): there, answering, our
        # key? Asked once, briefly: the SDK would retry a dead URL for minutes, silently.
        from tinker.lib.base_url import resolve_base_url

        from tinkerkit.server_probe import probe_base_url

        probe_base_url(resolve_base_url(kwargs.get("base_url")), api_key)
        return tinker.ServiceClient(**session, **kwargs)
    if kwargs:
        raise TypeError(
            f"unexpected options for the {name!r} backend: {', '.join(sorted(kwargs))} "
            "(base_url/api_key are for the 'tinker' backend; offline backends need neither)"
        )
    connection = _offline(name, latency=latency, faults=faults, models=models)
    client = tinker.ServiceClient(
        **session, base_url=connection.base_url, api_key=connection.api_key
    )
    _connections[client] = connection
    return client


def connection_of(service: object) -> Connection | None:
    """Where an offline ``ServiceClient`` from ``tk.connect`` is served (None for any
    other client): what a worker process needs to reach the same service, e.g.
    ``tinker.SamplingClient.from_sampler_handle(handle, api_key=connection.api_key)``.

    Example:
        >>> tk.connection_of(tk.connect("mock")).base_url
        'http://127.0.0.1:41523'
    """
    if not isinstance(service, tinker.ServiceClient):
        return None
    return _connections.get(service)


def rest_client(source: Any = None) -> tinker.RestClient:
    """The SDK's ``tinker.RestClient`` (runs, checkpoints, sessions, download URLs).

    ``source`` is a backend name (``"mock"``, ``"local"``, ``"tinker"``; None resolves as
    ``connect`` does) or a ``ServiceClient``. An offline backend's REST client reads the
    same ``TINKERKIT_HOME`` store as every other, so runs saved by one process are listed
    by the next.

    Example:
        >>> rest = tk.rest_client("mock")
        >>> rest.list_user_checkpoints().result().checkpoints
    """
    if isinstance(source, tinker.ServiceClient):
        connection = connection_of(source)
        if connection is None:
            return source._rest_client()
        return tinker.RestClient(base_url=connection.base_url, api_key=connection.api_key)
    if source is not None and not isinstance(source, str):
        if hasattr(source, "create_rest_client"):  # an older SDK's client, or a test double
            return source.create_rest_client()
        raise TypeError(f"rest_client takes a backend name or a ServiceClient, got {source!r}")
    name = resolve_backend(source)
    if name == "tinker":
        return tinker.RestClient()
    connection = _offline(name)
    return tinker.RestClient(base_url=connection.base_url, api_key=connection.api_key)
