"""The process's own Tinker service, behind ``tk.connect("mock" | "local")``.

The first ``tk.connect`` of an offline backend starts one server for the process, on a
free loopback port, in a background thread; every call adds a ``Service`` to it under
a fresh API key (so each connection keeps its own latency, faults and model mapping)
and returns the SDK's own ``tinker.ServiceClient`` pointed at it. The server stops at
interpreter exit. A forked child starts its own on first use.

Example:
    >>> server = local_server()
    >>> key = server.add(Service(engine_factory("mock")))
    >>> tinker.ServiceClient(base_url=server.base_url, api_key=key)
"""

from __future__ import annotations

import atexit
import os
import threading

from tinkerkit.server.app import create_app
from tinkerkit.server.auth import Host
from tinkerkit.server.runner import ThreadedServer
from tinkerkit.server.service import Service

_HOST = "127.0.0.1"


class LocalServer:
    """One uvicorn server in a daemon thread, serving every ``Service`` added to it."""

    def __init__(self) -> None:
        self.host = Host()
        self.pid = os.getpid()
        self._order: list[Service] = []
        self._running = ThreadedServer(create_app(self.host), _HOST, 0, name="tinkerkit-service")
        self.base_url = self._running.base_url

    def __repr__(self) -> str:
        return f"<tinkerkit LocalServer at {self.base_url}>"

    def add(self, service: Service) -> str:
        """Serve ``service`` under a fresh API key; the key."""
        key = self.host.add(service)
        self._order.append(service)
        return key

    def services(self) -> list[Service]:
        """Every service added, oldest first."""
        return list(self._order)

    def stop(self) -> None:
        for service in self._order:
            service.close()
        self._running.stop()


_lock = threading.Lock()
_server: LocalServer | None = None


def local_server() -> LocalServer:
    """This process's server, started on first use.

    Example:
        >>> local_server().base_url
        'http://127.0.0.1:41523'
    """
    global _server
    with _lock:
        if _server is None or _server.pid != os.getpid():
            _server = LocalServer()
        return _server


@atexit.register
def _stop() -> None:
    with _lock:
        if _server is not None and _server.pid == os.getpid():
            _server.stop()


def services() -> list[Service]:
    """Every service ``tk.connect`` added to this process's server, oldest first (none
    before the server started)."""
    with _lock:
        server = _server if _server is not None and _server.pid == os.getpid() else None
    return server.services() if server is not None else []
