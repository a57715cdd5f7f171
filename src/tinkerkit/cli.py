"""The ``tinkerkit`` command."""

from __future__ import annotations

import sys

import click

from tinkerkit.errors import TinkerkitError


@click.group()
@click.version_option(package_name="tinkerkit")
def main() -> None:
    """tinkerkit: fine-tune LLMs through the Tinker API, or offline on built-in backends."""


@main.command()
@click.option("--backend", default="mock", show_default=True, help="mock or local.")
@click.option("--steps", default=100, show_default=True, type=int)
@click.option("--lr", "learning_rate", default=5e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--latency", default=0.0, show_default=True, type=float, help="Simulated round trip (s)."
)
def demo(backend: str, steps: int, learning_rate: float, seed: int, latency: float) -> None:
    """Train a tiny model offline on a few chats; show loss falling and answers learned."""
    from tinkerkit.demo import run_demo

    _run(lambda: run_demo(backend, steps, learning_rate, seed, latency, echo=click.echo))


@main.group()
def models() -> None:
    """Models the offline backends know."""


@models.command("list")
@click.option("--backend", default="mock", show_default=True)
def models_list(backend: str) -> None:
    """List model names (offline, the service's names are stood in by tinkerkit/tiny)."""
    import tinkerkit as tk

    def run() -> None:
        caps = tk.connect(backend).get_server_capabilities()
        for model in caps.supported_models:
            click.echo(f"{model.model_name}\t(context {model.max_context_length})")

    _run(run)


def _run(fn: object) -> None:
    """Run a command; our typed errors become one clear line and exit code 1."""
    try:
        fn()  # type: ignore[operator]
    except TinkerkitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
