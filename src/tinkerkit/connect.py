"""``tk.connect``: pick a backend and get a Tinker ``ServiceClient`` for it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

# resolve_backend and the variables it reads live with the backends (the offline
# RestClient resolves names too, and backends import nothing above them).
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
    "connect",
    "offline_backends",
    "resolve_backend",
    "rest_client",
]


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
) -> Any:
    """A ``ServiceClient`` for ``backend``: ``"tinker"``, ``"mock"`` or ``"local"``.

    ``"tinker"`` returns the official ``tinker.ServiceClient(...)`` untouched (every
    keyword goes to it). The offline backends return tinkerkit's subclasses of it, with
    the same methods and types; they take the SDK's session arguments
    (``user_metadata``, ``project_id``, ``display_name``), and ``latency`` simulates a
    network round trip per request, ``faults`` injects failures (``tinkerkit.testing``).
    ``models`` maps model names to local Hugging Face folders (over
    ``$TINKERKIT_MODELS``): a model folder is trained under that name by ``local``, a
    tokenizer folder or ``tokenizer.json`` is the name's tokenizer
    (``tinkerkit.models.mapping``).

    Example:
        >>> with tk.connect("mock") as service:
        ...     training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
        >>> tk.connect("local", models={"Qwen/Qwen3-8B": "/models/Qwen3-8B"})
    """
    name = resolve_backend(backend)
    if name == "tinker":
        if latency or faults or models:
            raise ValueError(
                "latency=, faults= and models= are for the offline backends (they simulate "
                "a network, or stand local models in for the service's)"
            )
        api_key = kwargs.get("api_key") or os.environ.get(ENV_API_KEY)
        if not api_key:
            raise MissingAPIKeyError()
        base_url = kwargs.get("base_url") or os.environ.get("TINKER_BASE_URL")
        if base_url:  # a server of one's own (tinkerkit serve): there, answering, our key?
            from tinkerkit.server_probe import probe_base_url

            probe_base_url(str(base_url), api_key)
        import tinker

        given: dict[str, Any] = {
            "user_metadata": user_metadata,
            "project_id": project_id,
            "display_name": display_name,
        }
        return tinker.ServiceClient(**{k: v for k, v in given.items() if v is not None}, **kwargs)

    from tinkerkit.backends.context import OfflineContext
    from tinkerkit.backends.faults import FaultInjector
    from tinkerkit.backends.service_client import ServiceClient

    if kwargs:
        raise TypeError(
            f"unexpected options for the {name!r} backend: {', '.join(sorted(kwargs))} "
            "(base_url/api_key are for the 'tinker' backend; offline backends need neither)"
        )
    options = {"models": models} if models else {}
    context = OfflineContext(
        factory=engine_factory(name, **options),
        latency=float(latency),
        faults=FaultInjector(faults),
    )
    return ServiceClient(context, user_metadata, project_id, display_name=display_name)


def rest_client(source: Any = None) -> Any:
    """A ``RestClient`` (runs, checkpoints, sessions, download URLs), the tinker 0.38 way.

    ``source`` is a backend name (``"mock"``, ``"local"``, ``"tinker"``; None resolves as
    ``connect`` does) or a ``ServiceClient`` of any backend. The real service gets
    ``tinker.RestClient()`` — 0.38 deprecates ``ServiceClient.create_rest_client()`` —
    and an offline backend its offline ``RestClient`` over the same ``TINKERKIT_HOME``
    store, so runs saved by one process are listed by the next.

    Example:
        >>> rest = tk.rest_client("mock")
        >>> rest.list_user_checkpoints().result().checkpoints
    """
    from tinkerkit.backends.rest_client import RestClient
    from tinkerkit.backends.service_client import ServiceClient

    if isinstance(source, ServiceClient):
        return source._rest()
    if source is not None and not isinstance(source, str):
        import tinker

        if isinstance(source, tinker.ServiceClient):
            return source._rest_client()
        if hasattr(source, "create_rest_client"):  # an older SDK's client, or a test double
            return source.create_rest_client()
        raise TypeError(f"rest_client takes a backend name or a ServiceClient, got {source!r}")
    name = resolve_backend(source)
    if name == "tinker":
        import tinker

        return tinker.RestClient()
    from tinkerkit.backends.context import OfflineContext

    return RestClient(OfflineContext(factory=engine_factory(name)))
