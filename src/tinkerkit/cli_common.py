"""What every ``tinkerkit`` subcommand shares: error reporting and backend options.

Its own module so that subcommands living in other modules (``cli_rl``, ``cli_export``,
``cli_serve``) import it without importing ``cli`` itself (which imports them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from tinkerkit.errors import TinkerkitError


def run_command(fn: Callable[[], Any]) -> Any:
    """Run a command; our typed errors become one clear line and exit code 1."""
    try:
        return fn()
    except TinkerkitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ImportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def backend_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--backend``, ``--model``, ``--seed``, ``--latency``: shared by the loop commands."""
    fn = click.option(
        "--latency",
        default=0.0,
        show_default=True,
        type=float,
        help="Simulated round trip per request (offline backends), seconds.",
    )(fn)
    fn = click.option("--seed", default=0, show_default=True, type=int)(fn)
    fn = click.option(
        "--model", default="tinkerkit/tiny", show_default=True, help="Base model name."
    )(fn)
    fn = click.option(
        "--backend",
        default=None,
        help="tinker, mock or local (default: TINKERKIT_BACKEND, else tinker if TINKER_API_KEY is set).",
    )(fn)
    return fn


def connect_backend(backend: str | None, latency: float) -> Any:
    import tinkerkit as tk

    if latency and (backend or "") != "tinker":
        return tk.connect(backend, latency=latency)
    return tk.connect(backend)


# Short names used throughout the commands.
_run = run_command
_connect = connect_backend
