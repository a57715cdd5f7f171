"""The client a loop or helper uses when it is given none: the public face's choice.

Loops (``tk.sft.train``), export (``tk.export.download("tinker://...")``) and recipes take
a service client and never connect themselves: they sit below ``tinkerkit.connect`` and
the service (docs/backends.md, "Layers"). Called without a client, they ask this module,
which the face (``tinkerkit/__init__.py``) fills when the package is imported with
``tk.connect()`` (the environment's backend) and ``tk.rest_client(service)``. Python
imports the package before any module in it, so the face's choice is always in place.

A foundation module, like ``tinkerkit.errors``: it imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import tinker

T = TypeVar("T")

_connect: Callable[[], Any] | None = None
_rest_client: Callable[[Any], Any] | None = None


def install(connect: Callable[[], Any], rest_client: Callable[[Any], Any]) -> None:
    """Set the defaults: ``connect()`` gives a service client for a call that got none,
    ``rest_client(service)`` the REST client of a service client."""
    global _connect, _rest_client
    _connect, _rest_client = connect, rest_client


def _installed() -> tuple[Callable[[], Any], Callable[[Any], Any]]:
    if _connect is None or _rest_client is None:  # only if the package was never imported
        raise RuntimeError(
            "no default client: import tinkerkit, or pass service=tk.connect(...) explicitly"
        )
    return _connect, _rest_client


def service_or_default(service: T | None) -> T:
    """``service``, or the face's default client (``tk.connect()``) when it is None.

    Example:
        >>> service = service_or_default(None)   # TINKERKIT_BACKEND=mock: a mock client
    """
    if service is not None:
        return service
    connect, _ = _installed()
    return connect()


def rest_client(service: Any) -> tinker.RestClient:
    """The REST client of a service client (``tk.rest_client(service)``): runs,
    checkpoints, download URLs of the same backend.

    Example:
        >>> rest_client(service).delete_checkpoint_from_tinker_path(path).result()
    """
    _, make = _installed()
    return make(service)
