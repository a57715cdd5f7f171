"""Run the app with uvicorn: in a background thread (``serve``) or in the foreground (CLI)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn

from tinkerkit.errors import PortInUseError
from tinkerkit.server.app import create_app
from tinkerkit.server.auth import Host
from tinkerkit.server.responses import release_waiting_requests
from tinkerkit.server.service import Service


@dataclass(frozen=True)
class Server:
    """A running server: point ``tinker.ServiceClient(base_url=..., api_key=...)`` at it."""

    base_url: str
    api_key: str
    backend: str
    app: Any

    def __repr__(self) -> str:  # never print the key
        return f"<tinkerkit Server {self.backend} at {self.base_url}>"


def check_host(host: str, allow_remote: bool = False) -> str:
    """Refuse anything but a loopback address unless ``allow_remote``.

    Example:
        >>> check_host("127.0.0.1")
        '127.0.0.1'
    """
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(
            f"refusing to listen on {host!r}: tinkerkit serve binds loopback only (127.0.0.1). "
            "Pass allow_remote=True (CLI: --allow-remote) if you really mean to expose it."
        )
    return host


class UvicornServer(uvicorn.Server):
    """uvicorn's server, which first answers the requests still waiting when it stops
    (a long poll: "try again"; a body still arriving: 503): uvicorn would cancel them
    after its shutdown timeout, each a traceback in the log.

    Example:
        >>> UvicornServer(config(app, "127.0.0.1", 8000, "warning")).run()  # doctest: +SKIP
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        release_waiting_requests()
        await super().shutdown(sockets)


def config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # uvicorn's own logging setup binds a handler to the sys.stderr of the moment
        # (under pytest a capture stream, closed before the server's last "Shutting
        # down"): its loggers propagate to the process's logging instead.
        log_config=None,
        # uvicorn's access log prints query strings; RequestLog replaces it.
        access_log=False,
        # Long polls (retrieve_future) must not hold shutdown up.
        timeout_graceful_shutdown=1,
        lifespan="off",
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port), bound before anything is
    printed or started; ``PortInUseError`` naming the address if it cannot be had.

    Example:
        >>> sock = bind_socket("127.0.0.1", 0)
        >>> sock.getsockname()[1] > 0
        True
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As uvicorn binds: a restart does not wait out TIME_WAIT; a live listener on
        # the port still refuses the bind.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise PortInUseError(host, port, exc.strerror or str(exc)) from None
    except BaseException:
        sock.close()
        raise
    return sock


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def build(
    backend: str,
    api_key: str | None,
    latency: float = 0.0,
    models: Mapping[str, str] | None = None,
) -> tuple[Any, str]:
    """The app serving one ``Service`` on ``backend`` and the API key it checks
    (generated if not given); ``models`` maps model names to local HF folders
    (``tk.connect(models=...)``). The offline home must be writable: checked here, so a
    read-only ``TINKERKIT_HOME`` is one line at start, not a 500 on every request."""
    from tinkerkit.backends.registry import engine_factory
    from tinkerkit.paths import check_home_writable

    if backend == "tinker":
        raise ValueError("serve fronts an offline backend: use 'mock' or 'local'")
    check_home_writable()
    options = {"models": models} if models else {}
    host = Host()
    key = host.add(Service(engine_factory(backend, **options), latency=latency), api_key)
    return create_app(host), key


@contextlib.contextmanager
def serve(
    backend: str = "mock",
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    allow_remote: bool = False,
    log_level: str = "warning",
    models: Mapping[str, str] | None = None,
    latency: float = 0.0,
) -> Iterator[Server]:
    """Run a tinker-compatible server on an offline backend in a background thread
    (``models``: model name → local HF folder, as ``tk.connect(models=...)``; ``latency``:
    seconds every result is held, as ``tinkerkit serve --latency``).

    Example:
        >>> import tinker
        >>> from tinkerkit.server import serve
        >>> with serve("mock") as server:
        ...     service = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
        ...     training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
    """
    check_host(host, allow_remote)
    app, key = build(backend, api_key, latency, models=models)
    running = ThreadedServer(app, host, port, log_level, name="tinkerkit-serve")
    try:
        yield Server(running.base_url, key, backend, app)
    finally:
        running.stop()


class ThreadedServer:
    """``app`` served by uvicorn in a daemon thread, on a socket bound before the thread
    starts (so ``base_url`` is known, and no other process can take the port between).
    uvicorn installs no signal handlers off the main thread: Ctrl-C stays the caller's.

    Example:
        >>> running = ThreadedServer(app, "127.0.0.1", 0)
        >>> running.base_url
        'http://127.0.0.1:41523'
        >>> running.stop()
    """

    def __init__(
        self, app: Any, host: str, port: int, log_level: str = "warning", *, name: str
    ) -> None:
        self._sock = bind_socket(host, port)
        chosen = _port(self._sock)
        self.base_url = f"http://{host}:{chosen}"
        self._server = UvicornServer(config(app, host, chosen, log_level))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tinkerkit's service could not start on {self.base_url}")
            time.sleep(0.002)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def run_forever(app: Any, sock: socket.socket, log_level: str = "info") -> None:
    """Serve ``app`` on the bound ``sock`` in the foreground until interrupted (the CLI);
    the key is never logged.

    Example:
        >>> run_forever(app, bind_socket("127.0.0.1", 8000))  # doctest: +SKIP
    """
    host, port = sock.getsockname()[:2]
    try:
        UvicornServer(config(app, host, port, log_level)).run(sockets=[sock])
    finally:
        sock.close()
