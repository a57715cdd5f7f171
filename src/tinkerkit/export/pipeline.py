"""``export_checkpoint``: download (if needed) + convert to PEFT or merge, in one call."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from tinkerkit.export.errors import UnsupportedSourceError
from tinkerkit.export.outputs import check_out_dir
from tinkerkit.export.sources import download
from tinkerkit.protocols import ServiceClientLike

Format = Literal["peft", "merged"]


def export_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    *,
    format: Format = "peft",
    base_model: str | Path | None = None,
    service: ServiceClientLike | None = None,
    progress: bool = True,
) -> Path:
    """Export a checkpoint (``tinker://`` path, URL, local adapter folder or tar) as a
    PEFT adapter (``format="peft"``) or a merged HF model (``"merged"``) in ``out_dir``.

    ``base_model`` defaults to the adapter config's ``base_model_name_or_path``.

    Example:
        >>> export_checkpoint("tinker://run/external_weights/x", "out/", format="merged",
        ...                   base_model="tinkerkit/tiny", service=tk.connect("local"))
        PosixPath('out')
    """
    from tinkerkit.export.convert import load_adapter, to_peft
    from tinkerkit.export.merging import merge

    out = Path(out_dir)
    if format not in ("peft", "merged"):
        raise UnsupportedSourceError(f"Unknown export format {format!r}: use 'peft' or 'merged'.")
    check_out_dir(out)
    text = str(source)
    scratch: Path | None = None
    try:
        if "://" in text:
            out.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.source-", dir=out.parent))
            adapter = download(text, scratch / "adapter", service=service, progress=progress)
        else:
            adapter = Path(text)
            if not adapter.exists():
                raise UnsupportedSourceError(
                    f"{text} does not exist: pass a tinker:// path, a URL, or a local adapter "
                    "folder or tar."
                )
        loaded = load_adapter(adapter, name=text)
        if format == "peft":
            return to_peft(loaded, out, base_model=base_model)
        base = base_model or loaded.config.get("base_model_name_or_path")
        if not base:
            raise UnsupportedSourceError("the adapter names no base model; pass --base-model.")
        return merge(base, loaded, out, progress=progress)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
