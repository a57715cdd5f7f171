"""``tinkerkit serve``: run tinker's HTTP API on an offline backend."""

from __future__ import annotations

import logging

import click

from tinkerkit.cli_common import _run


@click.command("serve")
@click.option(
    "--backend",
    type=click.Choice(["mock", "local"]),
    default="mock",
    show_default=True,
    help="Offline backend that executes the requests.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--api-key",
    default=None,
    envvar="TINKERKIT_SERVE_API_KEY",
    help="Key clients must send (must start with 'tml-'). Default: a fresh one, printed once.",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host. The API key is then all that guards the server.",
)
@click.option("--latency", default=0.0, type=float, help="Simulated latency per request, s.")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME=PATH",
    help="Map model NAME to a local HF model folder (local: trains that model under NAME) "
    "or tokenizer folder/tokenizer.json (repeatable; over $TINKERKIT_MODELS).",
)
@click.option("--quiet", is_flag=True, help="Do not log one line per request.")
def serve(
    backend: str,
    host: str,
    port: int,
    api_key: str | None,
    allow_remote: bool,
    latency: float,
    models: tuple[str, ...],
    quiet: bool,
) -> None:
    """Serve tinker 0.38's API offline, for unmodified ``tinker.ServiceClient`` code.

    Example:

        tinkerkit serve --backend mock --port 8000
        tinkerkit serve --backend local --model Qwen/Qwen3-8B=/models/Qwen3-8B

    then, in Python: ``tinker.ServiceClient(base_url="http://127.0.0.1:8000",
    api_key=<printed key>)``.
    """

    def run() -> None:
        # Without the extra, this import says: pip install 'tinkerkit[serve]'.
        from tinkerkit.models.mapping import parse_pairs
        from tinkerkit.server.runner import bind_socket, build, check_host, run_forever

        try:
            check_host(host, allow_remote)
            app, key = build(backend, api_key, latency, parse_pairs(models, "--model"))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        # Bound before anything is printed: a taken port is one line, and the URL
        # printed is one that answers.
        sock = bind_socket(host, port)
        url = f"http://{host}:{sock.getsockname()[1]}"
        logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
        click.echo(f"tinkerkit serve: {backend} backend on {url}")
        if api_key is None:
            # Printed once, here; never logged by the server afterwards.
            click.echo(f"API key (use as TINKER_API_KEY): {key}")
        click.echo(f'  tinker.ServiceClient(base_url="{url}", api_key=...)  — Ctrl-C to stop')
        run_forever(app, sock, log_level="warning")

    _run(run)
