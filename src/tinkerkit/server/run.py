"""``tinkerkit run``: one command against a private ``tinkerkit serve``.

``serving_env`` starts the server (loopback, a fresh API key) and yields the environment
for the command: ``TINKER_BASE_URL`` and ``TINKER_API_KEY`` — the variables the tinker
SDK reads when ``tinker.ServiceClient()`` gets no arguments — and, where the Hugging
Face hub is offline, a private hub cache with the backend's tokenizers under their hub
ids (``hf_overlay``). ``run`` runs the command in it, its output going straight to this
process's stdout and stderr, forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to it, stops the
server when it exits and returns its exit code (128 + N if signal N ended it).

Example:
    >>> import sys, tinkerkit as tk
    >>> tk.run([sys.executable, "-c", "import tinker; tinker.ServiceClient()"])
    0
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from tinkerkit.errors import TinkerkitError

if TYPE_CHECKING:
    from tinkerkit.server.hf_overlay import HubOverlay

logger = logging.getLogger("tinkerkit.server")

ENV_BASE_URL = "TINKER_BASE_URL"
ENV_API_KEY = "TINKER_API_KEY"
ENV_MODELS = "TINKERKIT_MODELS"
ENV_OFFLINE = "TINKERKIT_OFFLINE"
# A credential command belongs to the real service; the SDK must use the private key.
_DROPPED = ("TINKER_CREDENTIAL_CMD",)
FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)
# The terminal sends these to the whole foreground process group, the child included.
_TERMINAL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGQUIT") if hasattr(signal, name)
)


class RunCommandError(TinkerkitError):
    """The command could not be started (not found, not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_models(specs: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["NAME=PATH", ...]`` (or a mapping) → {name: absolute path}; each path must exist.

    Example:
        >>> parse_models(["Qwen/Qwen3-8B=./qwen3"])  # doctest: +SKIP
        {'Qwen/Qwen3-8B': '/home/me/qwen3'}
    """
    if not specs:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(specs, Mapping):
        pairs = [(str(k), str(v)) for k, v in specs.items()]
    else:
        for spec in specs:
            name, sep, path = str(spec).partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(
                    f"--model takes NAME=PATH (a local Hugging Face folder), got {spec!r}"
                )
            pairs.append((name.strip(), path.strip()))
    models = {}
    for name, path in pairs:
        if ";" in name or ";" in path:
            raise ValueError(f"model names and paths cannot contain ';': {name}={path}")
        folder = Path(path).expanduser()
        if not folder.exists():
            raise ValueError(f"--model {name}={path}: {str(folder)!r} does not exist")
        models[name] = str(folder.resolve())
    return models


def format_models(models: Mapping[str, str]) -> str:
    """The ``TINKERKIT_MODELS`` form of a mapping: ``name=path;name=path``."""
    return ";".join(f"{name}={path}" for name, path in models.items())


@contextlib.contextmanager
def _environ(changes: Mapping[str, str]) -> Iterator[None]:
    """``changes`` in this process's environment while the server runs, then restored.

    The offline backends read ``TINKERKIT_MODELS`` (the ``--model`` mapping) and
    ``TINKERKIT_OFFLINE`` from the environment; once ``tk.connect`` takes ``models=``
    directly the mapping becomes a keyword instead.
    """
    before = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _split_models(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(";"):
        name, sep, path = item.partition("=")
        if sep and name.strip():
            pairs.append((name.strip(), path.strip()))
    return pairs


class ServeOptions(TypedDict, total=False):
    """The options of ``serving_env``/``run`` besides the backend (see ``serving_env``)."""

    models: Sequence[str] | Mapping[str, str] | None
    port: int
    hub_overlay: bool | None
    tokenizers: Sequence[str] | None
    env: Mapping[str, str] | None


@dataclass(frozen=True)
class PrivateServer:
    """A server started for one command, and that command's environment."""

    env: dict[str, str]
    """``os.environ`` (or the given env) plus ``TINKER_BASE_URL``/``TINKER_API_KEY``, ..."""
    base_url: str
    overlay: HubOverlay | None
    """The private hub cache, where one was built."""

    def __repr__(self) -> str:  # the env holds the key
        return f"<tinkerkit PrivateServer at {self.base_url}>"


@contextlib.contextmanager
def private_server(
    backend: str = "mock",
    *,
    models: Sequence[str] | Mapping[str, str] | None = None,
    port: int = 0,
    hub_overlay: bool | None = None,
    tokenizers: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[PrivateServer]:
    """``serving_env``, with the server's URL and the hub overlay alongside the env."""
    from tinkerkit.server.hf_overlay import OverlayBuild, hub_offline, user_hub_cache
    from tinkerkit.server.runner import serve

    mapping = parse_models(models)
    child = dict(os.environ if env is None else env)
    overlay = None
    with contextlib.ExitStack() as stack:
        changes: dict[str, str] = {}
        if mapping:
            merged = dict(_split_models(os.environ.get(ENV_MODELS, "")))
            merged.update(mapping)
            changes[ENV_MODELS] = child[ENV_MODELS] = format_models(merged)
        build = None
        if hub_overlay or (hub_overlay is None and hub_offline(child)):
            # The hub is out of reach: the in-process backend must not try it either
            # (each model's tokenizer would wait for download retries).
            changes[ENV_OFFLINE] = "1"
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinkerkit-run-")))
            build = OverlayBuild(
                root,
                backend,
                names=None if tokenizers is None else [*tokenizers],
                also=list(mapping),
                user_cache=user_hub_cache(child),
                env={**os.environ, **changes},
            )
            stack.callback(build.cancel)
        stack.enter_context(_environ(changes))
        # The server starts while the overlay is being built.
        server = stack.enter_context(serve(backend, port=port))
        if build is not None:
            try:
                overlay = build.result()
            except RuntimeError as exc:
                raise RunCommandError(
                    f"{exc}. Run without it: --hub-overlay off (tk.run(..., hub_overlay=False)).",
                    1,
                ) from None
            child.update(overlay.env())
        for name in _DROPPED:
            child.pop(name, None)
        child[ENV_BASE_URL] = server.base_url
        child[ENV_API_KEY] = server.api_key
        # Print-as-you-go for Python commands, even when our stdout is a pipe.
        child.setdefault("PYTHONUNBUFFERED", "1")
        yield PrivateServer(child, server.base_url, overlay)


@contextlib.contextmanager
def serving_env(backend: str = "mock", **options: Unpack[ServeOptions]) -> Iterator[dict[str, str]]:
    """A private server on ``backend``, and the environment a command needs to use it.

    The yielded dict is a copy of ``env`` (default ``os.environ``) with
    ``TINKER_BASE_URL``/``TINKER_API_KEY`` set (and ``TINKER_CREDENTIAL_CMD`` removed);
    this process's own environment only gains ``TINKERKIT_MODELS`` while the server
    runs. ``models`` maps service names to local HF folders
    (``{"Qwen/Qwen3-8B": "/models/qwen3"}`` or ``["NAME=PATH"]``). ``hub_overlay``:
    None builds the private hub cache (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1``) when the
    hub is offline (``HF_HUB_OFFLINE=1`` or no answer), True always, False never; it
    holds the tokenizers of ``tokenizers`` (model names; None: every name the backend
    knows — each family's vocabulary is loaded once, a few seconds each) and of the
    mapped names. Server and overlay are stopped and removed on exit.

    Example:
        >>> with tk.serving_env("mock") as env:
        ...     subprocess.run(["python", "train.py"], env=env, check=True)
    """
    with private_server(backend, **options) as private:
        yield private.env


def exit_code(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + N when signal N ended it.

    Example:
        >>> exit_code(-15)
        143
    """
    return 128 - returncode if returncode < 0 else returncode


def run(command: Sequence[str], backend: str = "mock", **options: Unpack[ServeOptions]) -> int:
    """Run ``command`` against a private server on ``backend``; its exit code.

    Unmodified tinker code in the command (``tinker.ServiceClient()`` with no arguments,
    the cookbook's recipes) talks to the server. See ``serving_env`` for the options.

    Example:
        >>> code = tk.run(["python", "-m", "tinker_cookbook.recipes.sl_basic"])
    """
    if not command:
        raise ValueError("run needs a command, e.g. ['python', 'train.py']")
    with serving_env(backend, **options) as child_env:
        return run_child(list(command), child_env)


def run_child(command: list[str], env: Mapping[str, str]) -> int:
    """Run ``command`` with inherited stdout/stderr, forwarding signals; its exit code."""
    try:
        # Inherited file descriptors: the child's output reaches the terminal unbuffered by us.
        proc = subprocess.Popen(command, env=dict(env))
    except FileNotFoundError:
        raise RunCommandError(f"{command[0]}: command not found", 127) from None
    except PermissionError:
        raise RunCommandError(f"{command[0]}: permission denied (not executable?)", 126) from None
    with _forwarding_signals(proc):
        return exit_code(proc.wait())


@contextlib.contextmanager
def _forwarding_signals(proc: subprocess.Popen[Any]) -> Iterator[None]:
    """Pass SIGINT/SIGTERM/SIGHUP/SIGQUIT on to ``proc`` while it runs.

    A Ctrl-C from the terminal already reached the child (same foreground process
    group), so the first one is not sent again — a Python child would otherwise get two
    KeyboardInterrupts; a second one, or one sent to this process alone, is forwarded.
    Signal handlers can only be set in the main thread; elsewhere nothing is forwarded.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: set[int] = set()

    def forward(signum: int, frame: FrameType | None) -> None:
        first = signum not in seen
        seen.add(signum)
        if first and signum in _TERMINAL_SIGNALS and _in_terminal_foreground(proc.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _in_terminal_foreground(pid: int) -> bool:
    """Whether ``pid`` is in the foreground process group of our controlling terminal."""
    try:
        group = os.getpgid(pid)
    except OSError:
        return False
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd) and os.tcgetpgrp(fd) == group:
                return True
    return False


__all__ = [
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_MODELS",
    "PrivateServer",
    "RunCommandError",
    "ServeOptions",
    "exit_code",
    "parse_models",
    "private_server",
    "run",
    "run_child",
    "serving_env",
]
