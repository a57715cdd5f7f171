"""``tinkerkit download`` and ``tinkerkit export`` (wired into ``tinkerkit.cli.main``).

Also runnable alone: ``python -m tinkerkit.cli_export download SOURCE --out DIR``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinkerkit.cli_common import _connect, _run
from tinkerkit.cli_options import OUTPUT_FOLDER, POSITIVE_FLOAT, POSITIVE_INT

_BACKEND_HELP = (
    "For tinker:// sources: tinker, mock or local (default: the backend the path names, "
    "tinker://mock-... or tinker://local-...; else TINKERKIT_BACKEND / TINKER_API_KEY)."
)


def _service(source: str, backend: str | None) -> Any:
    """A service client only when the source needs one (``tinker://``); without
    ``--backend``, the offline backend the path's run id names (``tinker://local-...``)."""
    if not source.startswith("tinker://"):
        return None
    if backend is None:
        from tinkerkit.backends.registry import backend_of_path

        backend = backend_of_path(source)
    return _connect(backend, 0.0)


@click.command("download")
@click.argument("source")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=OUTPUT_FOLDER,
    help="New or empty folder for the files.",
)
@click.option("--backend", default=None, help=_BACKEND_HELP)
@click.option(
    "--sha256", default=None, help="Expected sha256 of a single-file download or local tar."
)
@click.option(
    "--max-bytes",
    type=POSITIVE_INT,
    default=32 << 30,
    show_default=True,
    help="Refuse a download larger than this many bytes (all files together).",
)
@click.option(
    "--deadline",
    type=POSITIVE_FLOAT,
    default=7200.0,
    show_default=True,
    help="Give up if the whole download takes longer than this many seconds.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def download_command(
    source: str,
    out_dir: Path,
    backend: str | None,
    sha256: str | None,
    max_bytes: int,
    deadline: float,
    no_progress: bool,
) -> None:
    """Download a checkpoint (tinker:// path, URL or tar) into --out, extracting safely.

    An interrupted or killed download resumes when run again with the same source and
    --out (each partial file is validated with the server's ETag or Last-Modified).
    """

    def run() -> None:
        from tinkerkit.export import download

        path = download(
            source,
            out_dir,
            service=_service(source, backend),
            progress=not no_progress,
            sha256=sha256,
            max_bytes=max_bytes,
            deadline_s=deadline,
        )
        click.echo(f"wrote {path}")
        for item in sorted(path.rglob("*")):
            if item.is_file():
                click.echo(f"  {item.relative_to(path)}  {item.stat().st_size} bytes")

    _run(run)


@click.command("export")
@click.argument("source")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["peft", "merged"]),
    default="peft",
    show_default=True,
    help="peft: LoRA adapter folder; merged: full HF model.",
)
@click.option(
    "--base-model",
    default=None,
    help="Local HF model folder or tinkerkit/tiny (default: the adapter's own).",
)
@click.option("--out", "out_dir", required=True, type=OUTPUT_FOLDER, help="New or empty folder.")
@click.option("--backend", default=None, help=_BACKEND_HELP)
@click.option(
    "--checkpoint",
    default=None,
    help="For a run folder: the checkpoint to export, by name (default: its last, final).",
)
@click.option(
    "--yes",
    is_flag=True,
    help="On the Tinker service, export a weights/sampler_weights path without asking "
    "(it starts a training client there).",
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def export_command(
    source: str,
    fmt: str,
    base_model: str | None,
    out_dir: Path,
    backend: str | None,
    checkpoint: str | None,
    yes: bool,
    no_progress: bool,
) -> None:
    """Export a checkpoint as a PEFT adapter or a merged Hugging Face model.

    SOURCE: a run folder (--log-dir of tinkerkit sft/dpo/rl), a tinker:// path
    (weights, sampler_weights or external_weights), a URL, or a local adapter folder or
    tar. A weights or sampler_weights path is loaded into a training client, saved with
    save_weights_external and downloaded; on the Tinker service that is asked first
    (--yes skips the question), offline it just happens.
    """

    def run() -> None:
        from tinkerkit.export import export, plan

        route = plan(source, checkpoint)
        path = export(
            source,
            out_dir,
            format=fmt,  # type: ignore[arg-type]
            base_model=base_model,
            service=_service(route.path, backend),
            progress=not no_progress,
            checkpoint=checkpoint,
            confirm=None if yes or _offline(route.path, backend) else _ask,
        )
        how = (
            "PeftModel.from_pretrained(base, DIR)"
            if fmt == "peft"
            else ("AutoModelForCausalLM.from_pretrained(DIR)")
        )
        click.echo(f"wrote {path} (load with {how})")

    _run(run)


def _offline(path: str, backend: str | None) -> bool:
    """Whether ``path`` is answered offline (``mock``/``local``): nothing there costs."""
    if not path.startswith("tinker://"):
        return True
    if backend is None:
        from tinkerkit.backends.registry import backend_of_path, resolve_backend

        backend = backend_of_path(path) or resolve_backend(None)
    return backend != "tinker"


def _ask(message: str) -> bool:
    click.echo(message, err=True)
    return click.confirm("Continue?", default=False, err=True)


@click.group()
def group() -> None:
    """Export commands (standalone entry point; the main CLI adds them directly)."""


group.add_command(download_command)
group.add_command(export_command)

if __name__ == "__main__":
    group()
