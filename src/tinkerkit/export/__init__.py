"""Export: Tinker checkpoints → local files → PEFT adapters or merged HF models.

    import tinkerkit.export as tke
    tke.export("runs/a", "peft/")                  # a run folder or any tinker:// path
    folder = tke.download("tinker://<run>/external_weights/final", "weights/")
    tke.to_peft(folder, "peft/", base_model="/models/Llama-3.2-1B")
    tke.merge("/models/Llama-3.2-1B", folder, "merged/")
    model, tok = tke.load_for_inference("merged/")
    print(tke.generate(model, tok, "Hello"))
    print(tke.verify("merged/", sampling_client))

The model side (``to_peft``, ``merge``, ``load_for_inference``, ``generate``,
``verify``) is imported on first use, so downloads need no peft or model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tinkerkit.export.batch import FileSpec, fetch_many
from tinkerkit.export.errors import (
    AdapterFormatError,
    BaseModelError,
    ChecksumError,
    DownloadError,
    ExportError,
    OutputExistsError,
    SafetensorsFormatError,
    SizeMismatchError,
    UnsafeArchiveError,
    UnsupportedModelError,
    UnsupportedSourceError,
    UrlExpiredError,
)
from tinkerkit.export.fetch import RetryPolicy, fetch
from tinkerkit.export.safe_tar import Limits, safe_extract
from tinkerkit.export.sources import download

if TYPE_CHECKING:
    from tinkerkit.export.bases import resolve_base
    from tinkerkit.export.convert import Adapter, load_adapter, to_peft
    from tinkerkit.export.inference import generate, load_for_inference
    from tinkerkit.export.merging import merge
    from tinkerkit.export.parity import VerifyReport, verify
    from tinkerkit.export.pipeline import export
    from tinkerkit.export.route import Route, plan

_LAZY = {
    "Adapter": "convert",
    "load_adapter": "convert",
    "to_peft": "convert",
    "merge": "merging",
    "load_for_inference": "inference",
    "generate": "inference",
    "verify": "parity",
    "VerifyReport": "parity",
    "export": "pipeline",
    "plan": "route",
    "Route": "route",
    "resolve_base": "bases",
}

__all__ = [
    "Adapter",
    "AdapterFormatError",
    "BaseModelError",
    "ChecksumError",
    "DownloadError",
    "ExportError",
    "FileSpec",
    "Limits",
    "OutputExistsError",
    "RetryPolicy",
    "Route",
    "SafetensorsFormatError",
    "SizeMismatchError",
    "UnsafeArchiveError",
    "UnsupportedModelError",
    "UnsupportedSourceError",
    "UrlExpiredError",
    "VerifyReport",
    "download",
    "export",
    "fetch",
    "fetch_many",
    "generate",
    "load_adapter",
    "load_for_inference",
    "merge",
    "plan",
    "resolve_base",
    "safe_extract",
    "to_peft",
    "verify",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"tinkerkit.export.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'tinkerkit.export' has no attribute {name!r}")
