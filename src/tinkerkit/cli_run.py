"""``tinkerkit run``: run a command against a private ``tinkerkit serve``."""

from __future__ import annotations

import importlib
import logging
import shlex
import sys

import click

from tinkerkit.cli_common import _run
from tinkerkit.cli_options import THREADS, set_threads

_OVERLAY = {"auto": None, "on": True, "off": False}


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--backend",
    type=click.Choice(["mock", "local"]),
    default="mock",
    show_default=True,
    help="Offline backend that executes the command's requests.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME=PATH",
    help="Serve the service model NAME from the local HF folder PATH (repeatable).",
)
@click.option("--port", default=0, show_default=True, type=int, help="0 picks a free port.")
@click.option(
    "--hub-overlay",
    type=click.Choice(list(_OVERLAY)),
    default="auto",
    show_default=True,
    help="Private HF hub cache with the backend's tokenizers under their hub ids: "
    "auto = when the hub is offline (HF_HUB_OFFLINE=1 or unreachable).",
)
@click.option(
    "--tokenizer",
    "tokenizers",
    multiple=True,
    metavar="NAME",
    help="Put only these models' tokenizers in the hub overlay (repeatable; default: every "
    "model the backend knows, a few seconds per tokenizer family).",
)
@THREADS
@click.option("--quiet", is_flag=True, help="Print nothing of tinkerkit's own.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(
    backend: str,
    models: tuple[str, ...],
    port: int,
    hub_overlay: str,
    tokenizers: tuple[str, ...],
    threads: int | None,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND against a private server, offline; exit with COMMAND's exit code.

    COMMAND sees TINKER_BASE_URL and TINKER_API_KEY (a fresh key, never printed), so
    unmodified tinker code — ``tinker.ServiceClient()`` with no arguments, cookbook
    recipes — runs on the offline backend. Where the Hugging Face hub is offline, the
    backend's tokenizers are found by their hub ids through a private hub cache (your
    own cache is only read). Ctrl-C and SIGTERM go to COMMAND; the server stops when it
    exits.

    Example:

        tinkerkit run -- python -m tinker_cookbook.recipes.sl_basic
    """
    set_threads(threads)  # COMMAND inherits it too
    # Imported here: `tinkerkit --help` stays fast.
    server_run = _run(lambda: importlib.import_module("tinkerkit.server.run"))
    RunCommandError = server_run.RunCommandError
    private_server, run_child = server_run.private_server, server_run.run_child

    try:
        mapping = server_run.parse_models(models)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    # The server's own log: warnings only, so COMMAND's output is what you see.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def run() -> int:
        try:
            with private_server(
                backend,
                models=mapping,
                port=port,
                hub_overlay=_OVERLAY[hub_overlay],
                tokenizers=list(tokenizers) or None,
            ) as private:
                if not quiet:
                    overlay = ""
                    if private.overlay is not None:
                        overlay = f", {len(private.overlay.sources)} tokenizers by hub id offline"
                    shown = shlex.join(command)
                    shown = shown if len(shown) <= 60 else shown[:57] + "..."
                    click.echo(
                        f"tinkerkit run: {backend} backend at {private.base_url}{overlay}: {shown}",
                        err=True,
                    )
                return run_child(list(command), private.env)
        except RunCommandError as exc:
            click.echo(f"error: {exc}", err=True)
            return exc.exit_code

    sys.exit(_run(run))
