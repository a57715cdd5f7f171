"""``tinkerkit serve``: run tinker's HTTP API on an offline backend."""

from __future__ import annotations

import logging
import os

import click

from tinkerkit.cli_common import _run
from tinkerkit.cli_options import LATENCY, THREADS, Number, set_threads

_KEY_ENV = "TINKERKIT_SERVE_API_KEY"


def _read_key_file(path: str) -> str:
    """The key in ``path`` (its first line, spaces stripped); a usage error naming the
    file if it cannot be read or holds none. The key itself is never shown."""
    try:
        with open(path, encoding="utf-8") as f:
            key = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise click.UsageError(f"--api-key-file {path!r} cannot be read ({reason})") from None
    if not key:
        raise click.UsageError(f"--api-key-file {path!r} is empty: put the key on its first line")
    return key


def _api_key(api_key: str | None, api_key_file: str | None) -> str | None:
    """The key clients must send: from ``--api-key-file``, else $TINKERKIT_SERVE_API_KEY,
    else None (a fresh one). On the command line it would show in ``ps``: refused."""
    if api_key is not None:
        raise click.UsageError(
            "--api-key shows the key to every user of this machine (ps): set "
            f"{_KEY_ENV}=KEY or pass --api-key-file PATH instead (a key starting with 'tml-')"
        )
    if api_key_file is not None:
        return _read_key_file(api_key_file)
    return os.environ.get(_KEY_ENV) or None


@click.command("serve")
@click.option(
    "--backend",
    type=click.Choice(["mock", "local"]),
    default="mock",
    show_default=True,
    help="Offline backend that executes the requests.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=Number(int, at_least=0, at_most=65535),
    help="0 picks a free port.",
)
@click.option(
    "--api-key-file",
    default=None,
    metavar="PATH",
    help=f"File whose first line is the key clients must send (must start with 'tml-'); "
    f"or set {_KEY_ENV}. Default: a fresh key, printed once.",
)
# Refused with a message (a key in the command line shows in `ps`): kept so the old
# spelling says what to do instead of "no such option".
@click.option("--api-key", default=None, hidden=True)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host. The API key is then all that guards the server.",
)
@click.option(
    "--latency",
    default=0.0,
    type=LATENCY,
    help="Simulated latency per request, s.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME=PATH",
    help="Map model NAME to a local HF model folder (local: trains that model under NAME) "
    "or tokenizer folder/tokenizer.json (repeatable; over $TINKERKIT_MODELS).",
)
@THREADS
@click.option("--quiet", is_flag=True, help="Do not log one line per request.")
def serve(
    backend: str,
    host: str,
    port: int,
    api_key_file: str | None,
    api_key: str | None,
    allow_remote: bool,
    latency: float,
    models: tuple[str, ...],
    threads: int | None,
    quiet: bool,
) -> None:
    """Serve tinker 0.38's API offline, for unmodified ``tinker.ServiceClient`` code.

    The key clients must send comes from $TINKERKIT_SERVE_API_KEY or --api-key-file
    (never the command line, which other users see in ``ps``); without either, a fresh
    one is made and printed once.

    Example:

        tinkerkit serve --backend mock --port 8000
        TINKERKIT_SERVE_API_KEY=tml-my-key-1234 tinkerkit serve
        tinkerkit serve --backend local --model Qwen/Qwen3-8B=/models/Qwen3-8B

    then, in Python: ``tinker.ServiceClient(base_url="http://127.0.0.1:8000",
    api_key=<the key>)``.
    """
    key_given = _api_key(api_key, api_key_file)
    set_threads(threads)

    def run() -> None:
        # Without the extra, this import says: pip install 'tinkerkit[serve]'.
        from tinkerkit.models.mapping import parse_pairs
        from tinkerkit.server.runner import bind_socket, build, check_host, run_forever

        try:
            check_host(host, allow_remote)
            app, key = build(backend, key_given, latency, parse_pairs(models, "--model"))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        # Bound before anything is printed: a taken port is one line, and the URL
        # printed is one that answers.
        sock = bind_socket(host, port)
        url = f"http://{host}:{sock.getsockname()[1]}"
        logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
        click.echo(f"tinkerkit serve: {backend} backend on {url}")
        if key_given is None:
            # Printed once, here; never logged by the server afterwards.
            click.echo(f"API key (use as TINKER_API_KEY): {key}")
        click.echo(f'  tinker.ServiceClient(base_url="{url}", api_key=...)  — Ctrl-C to stop')
        run_forever(app, sock, log_level="warning")

    _run(run)
