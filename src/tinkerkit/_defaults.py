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
from pathlib import Path
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


_export_adapter: Callable[[str, Path, Any], Path] | None = None


def install_export(export_adapter: Callable[[str, Path, Any], Path]) -> None:
    """Set how a loop writes its final weights out (``export_final``):
    ``export_adapter(external_path, out_dir, service)`` → the PEFT adapter folder. The
    loops sit above nothing that converts weights (export sits below them in the flow),
    so the face hands them ``tk.export.export``."""
    global _export_adapter
    _export_adapter = export_adapter


def export_adapter(external_path: str, out_dir: Path, service: Any) -> Path:
    """Download ``external_path`` and write it into ``out_dir`` as a PEFT adapter.

    Example:
        >>> export_adapter("tinker://run/external_weights/final", Path("peft/"), service)
        PosixPath('peft')
    """
    if _export_adapter is None:
        raise RuntimeError("no exporter: import tinkerkit (it installs tk.export.export)")
    return _export_adapter(external_path, out_dir, service)


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
