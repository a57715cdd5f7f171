"""``export``: any checkpoint (a run folder, a ``tinker://`` path, a URL, files) → a
PEFT adapter or a merged HF model, in one call: the route (``export/route.py``), the
download, the conversion."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from tinkerkit.export.errors import UnsupportedSourceError
from tinkerkit.export.outputs import check_out_dir
from tinkerkit.export.route import export_state, plan
from tinkerkit.export.sources import download
from tinkerkit.protocols import ServiceClientLike

Format = Literal["peft", "merged"]


def export(
    source: str | Path,
    out_dir: str | Path,
    *,
    format: Format = "peft",
    base_model: str | Path | None = None,
    service: ServiceClientLike | None = None,
    progress: bool = True,
    checkpoint: str | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> Path:
    """Export a checkpoint as a PEFT adapter (``format="peft"``) or a merged HF model
    (``"merged"``) in ``out_dir`` (new or empty).

    ``source``: a run folder (``log_dir``: its last checkpoint, or ``checkpoint=`` by
    name), a ``tinker://`` path of any kind (``weights``, ``sampler_weights``,
    ``external_weights``), an http(s)/``file://`` URL, or a local adapter folder or tar.
    A ``weights`` or ``sampler_weights`` path is exported through a training client made
    from its state (``export/route.py``): on the service that starts a training run, so
    ``confirm(message)``, when given, is asked first. ``base_model`` defaults to the
    adapter config's ``base_model_name_or_path``. ``service``: ``tk.connect(...)``
    (default: the environment's backend), used for ``tinker://`` sources only.

    Example:
        >>> tk.export.export("runs/a", "peft/", service=tk.connect("local"))
        PosixPath('peft')
    """
    out = Path(out_dir)
    if format not in ("peft", "merged"):
        raise UnsupportedSourceError(f"Unknown export format {format!r}: use 'peft' or 'merged'.")
    check_out_dir(out)
    route = plan(source, checkpoint)

    def convert(path: str) -> Path:
        return _convert(path, out, format, base_model, service, progress, label=route.source)

    if route.state is not None:
        return export_state(route, service, convert, confirm)
    return convert(route.path)


def _convert(
    source: str,
    out: Path,
    format: Format,
    base_model: str | Path | None,
    service: ServiceClientLike | None,
    progress: bool,
    label: str,
) -> Path:
    """Download ``source`` (when remote) and write it into ``out`` as ``format``."""
    from tinkerkit.export.convert import load_adapter, to_peft
    from tinkerkit.export.merging import merge

    scratch: Path | None = None
    try:
        if "://" in source:
            out.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.source-", dir=out.parent))
            adapter = download(source, scratch / "adapter", service=service, progress=progress)
        else:
            adapter = Path(source)
            if not adapter.exists():
                raise UnsupportedSourceError(
                    f"{source} does not exist: pass a run folder, a tinker:// path, a URL, or "
                    "a local adapter folder or tar."
                )
        loaded = load_adapter(adapter, name=label)
        if format == "peft":
            return to_peft(loaded, out, base_model=base_model)
        base = base_model or loaded.config.get("base_model_name_or_path")
        if not base:
            raise UnsupportedSourceError("the adapter names no base model; pass --base-model.")
        return merge(base, loaded, out, progress=progress)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
