"""The ``tinkerkit`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tinkerkit.cli_common import TinkerkitGroup, _connect, _run, backend_options, printable
from tinkerkit.cli_export import download_command, export_command
from tinkerkit.cli_options import (
    LATENCY,
    NEW_TOKENS,
    NON_NEGATIVE_FLOAT,
    NUM_SAMPLES,
    OUTPUT_FILE,
    OUTPUT_FOLDER,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    SEED,
    TEXT,
)
from tinkerkit.cli_rl import rl
from tinkerkit.cli_run import run_command
from tinkerkit.cli_serve import serve
from tinkerkit.cli_train import dpo, rlhf, sft


@click.group(cls=TinkerkitGroup)
@click.version_option(package_name="tinkerkit")
def main() -> None:
    """tinkerkit: fine-tune LLMs through the Tinker API, or offline on built-in backends."""


@main.command()
@click.option(
    "--backend",
    default="local",
    show_default=True,
    type=click.Choice(["local", "mock"]),
    help="local, or mock (faster).",
)
@click.option(
    "--out",
    "out_dir",
    default="tinkerkit-demo",
    show_default=True,
    type=OUTPUT_FOLDER,
    help="Folder for the chats, logs and plot.",
)
@click.option("--steps", default=150, show_default=True, type=POSITIVE_INT)
@click.option("--lr", "learning_rate", default=1e-2, show_default=True, type=POSITIVE_FLOAT)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=LATENCY,
    help="Simulated round trip (s).",
)
def demo(
    backend: str, out_dir: Path, steps: int, learning_rate: float, seed: int, latency: float
) -> None:
    """Notes → chats → SFT → before/after answers → loss plot, all offline."""
    from tinkerkit.demo import run_demo

    _run(lambda: run_demo(backend, out_dir, steps, learning_rate, seed, latency, echo=click.echo))


@main.command()
@backend_options
@click.option(
    "--checkpoint",
    default=None,
    help="A tinker:// sampler (or state) path; default: the base model.",
)
@click.option(
    "--prompt", default=None, type=TEXT, help="A user message (sent through the chat template)."
)
@click.option(
    "--messages",
    "messages_file",
    default=None,
    type=click.Path(path_type=Path),
    help="A JSON file with a list of chat messages.",
)
@click.option("--raw", is_flag=True, help="Send --prompt as raw text, without the chat template.")
@click.option("--max-tokens", default=128, show_default=True, type=NEW_TOKENS)
@click.option("--temperature", default=0.0, show_default=True, type=NON_NEGATIVE_FLOAT)
@click.option("--num-samples", default=1, show_default=True, type=NUM_SAMPLES)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (text, tokens, logprobs).")
def sample(
    backend: str | None,
    model: str,
    seed: int,
    latency: float,
    checkpoint: str | None,
    prompt: str | None,
    messages_file: Path | None,
    raw: bool,
    max_tokens: int,
    temperature: float,
    num_samples: int,
    as_json: bool,
) -> None:
    """Sample from a base model or a checkpoint."""
    if (prompt is None) == (messages_file is None):
        raise click.UsageError("give exactly one of --prompt or --messages")

    def run() -> None:
        from tinkerkit.data.messages import load_messages
        from tinkerkit.text import sample_text

        # The prompt is checked before anything connects or loads a model.
        content: Any = load_messages(messages_file) if messages_file is not None else prompt
        chosen = backend
        if chosen is None and checkpoint:  # tinker://local-... names its backend
            from tinkerkit.backends.registry import backend_of_path

            chosen = backend_of_path(checkpoint)
        service = _connect(chosen, latency)
        if checkpoint:
            sampler = service.create_sampling_client(model_path=checkpoint).result()
        else:
            sampler = service.create_sampling_client(base_model=model).result()
        outs = sample_text(
            sampler,
            content,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            num_samples=num_samples,
            chat=not raw,
        )
        for out in outs:
            if as_json:
                click.echo(
                    json.dumps(
                        {
                            "text": out.text,
                            "tokens": out.tokens,
                            "logprobs": out.logprobs,
                            "stop_reason": out.stop_reason,
                        }
                    )
                )
            else:  # an untrained model's control characters, shown rather than obeyed
                click.echo(printable(out.text))

    _run(run)


@main.command()
@click.argument("log_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    default=None,
    type=OUTPUT_FILE,
    help="PNG path (default LOG_DIR/loss.png).",
)
def plot(log_dir: Path, out: Path | None) -> None:
    """Plot loss and learning rate from LOG_DIR/metrics.jsonl as a PNG (needs matplotlib)."""
    from tinkerkit.train.plots import plot_metrics

    path = _run(lambda: plot_metrics(log_dir, out))
    click.echo(f"wrote {path}")


@main.command()
@click.argument("notes_path", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=OUTPUT_FILE, help="Chat JSONL to write.")
@click.option(
    "--generate", is_flag=True, help="Ask a model for Q&A pairs instead of extracting sections."
)
@click.option("--backend", default=None, help="Backend of the generating model (with --generate).")
@click.option("--model", default="tinkerkit/tiny", show_default=True, help="Generating base model.")
@click.option("--checkpoint", default=None, help="A tinker:// sampler path to generate with.")
@click.option("--pairs", "pairs_per_document", default=10, show_default=True, type=POSITIVE_INT)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--system-prompt", default=None, type=TEXT, help="A system message to put in every chat."
)
def notes(
    notes_path: Path,
    out: Path,
    generate: bool,
    backend: str | None,
    model: str,
    checkpoint: str | None,
    pairs_per_document: int,
    seed: int,
    system_prompt: str | None,
) -> None:
    """Turn a Markdown note (or a folder of notes) into chat JSONL for `tinkerkit sft`."""
    from tinkerkit.data.notes import notes_to_chats, sampling_generator

    def run() -> bool:
        generator = None
        if generate:
            generator = sampling_generator(
                _connect(backend or "mock", 0.0),
                base_model=model,
                model_path=checkpoint,
                seed=seed,
            )
        report = notes_to_chats(
            notes_path,
            out,
            mode="generate" if generate else "extract",
            generator=generator,
            pairs_per_document=pairs_per_document,
            system_prompt=system_prompt,
        )
        click.echo(report.summary())
        return bool(report.ok)

    if not _run(run):
        sys.exit(1)


@main.group()
def models() -> None:
    """Models the offline backends know."""


@models.command("list")
@click.option("--backend", default="mock", show_default=True)
def models_list(backend: str) -> None:
    """List model names (offline, the service's names are stood in by tinkerkit/tiny)."""
    from tinkerkit.connect import rest_client

    def run() -> None:
        caps = rest_client(backend).get_server_capabilities().result()
        for model in caps.supported_models:
            click.echo(f"{model.model_name}\t(context {model.max_context_length})")

    _run(run)


@models.command("export-base")
@click.argument("name")
@click.option("--out", required=True, type=OUTPUT_FOLDER, help="A new (or empty) folder.")
def models_export_base(name: str, out: Path) -> None:
    """Write a built-in base model as a normal Hugging Face folder (config, weights, tokenizer)."""

    def run() -> None:
        from tinkerkit.models.registry import BUILTINS
        from tinkerkit.models.stand_ins import ModelNames

        names = ModelNames()
        # Checked before the local backend (torch, transformers) is imported.
        if name not in BUILTINS and names.entry(name) is None and names.mapped(name) is None:
            raise click.BadParameter(
                f"{name!r} is not a built-in model: give tinkerkit/tiny(-vl) or a service model "
                "name ('tinkerkit models list' shows them)",
                param_hint="NAME",
            )
        if out.is_dir() and any(out.iterdir()):
            raise click.BadParameter(
                f"{str(out)!r} is not empty: give a new or empty folder", param_hint="'--out'"
            )
        from tinkerkit.models.tiny_hf import export_base

        try:
            click.echo(f"wrote {export_base(name, out)}")
        except ValueError as exc:  # a mapped model folder: it has its own files
            raise click.BadParameter(str(exc), param_hint="NAME") from None

    _run(run)


# Commands defined in their own modules.
main.add_command(sft)
main.add_command(dpo)
main.add_command(rlhf)
main.add_command(rl)
main.add_command(download_command)
main.add_command(export_command)
main.add_command(serve)
main.add_command(run_command)


if __name__ == "__main__":
    main()
