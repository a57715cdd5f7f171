"""Tinker's sampler-archive layout: a tar of ``adapter_model.safetensors`` + config.

Sampler archives use the service's tensor names, so export code meets offline exactly
what it meets online.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tinkerkit.errors import CheckpointNotFoundError, RestRequestError

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


# The service names the output head's adapter ``model.unembed_tokens``; PEFT and the
# engines call it ``lm_head``. Sampler archives use the service's names, so export code
# meets offline exactly what it meets online.
_PEFT_HEAD = "base_model.model.lm_head."
_TINKER_HEAD = "base_model.model.model.unembed_tokens."


def to_tinker_names(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        (_TINKER_HEAD + k[len(_PEFT_HEAD) :] if k.startswith(_PEFT_HEAD) else k): v
        for k, v in weights.items()
    }


def from_tinker_names(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        (_PEFT_HEAD + k[len(_TINKER_HEAD) :] if k.startswith(_TINKER_HEAD) else k): v
        for k, v in weights.items()
    }


def adapter_archive(weights: dict[str, np.ndarray], config: dict[str, Any]) -> bytes:
    """A tar holding ``adapter_model.safetensors`` + ``adapter_config.json`` (Tinker's layout)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (
            (ADAPTER_FILE, st_save(to_tinker_names(weights))),
            (ADAPTER_CONFIG, json.dumps(config, indent=2).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def read_archive_weights(archive: Path) -> dict[str, np.ndarray]:
    """The LoRA tensors of a sampler archive (PEFT names); a corrupt or forged archive
    is one ``RestRequestError`` naming it, not a tar or safetensors traceback."""
    try:
        with tarfile.open(archive, mode="r") as tar:
            member = tar.getmember(ADAPTER_FILE)
            if not member.isfile():
                raise CheckpointNotFoundError(str(archive))
            handle = tar.extractfile(member)
            assert handle is not None
            return from_tinker_names(load_weights(handle.read(), f"{archive}:{ADAPTER_FILE}"))
    except (tarfile.TarError, KeyError, EOFError) as exc:
        raise RestRequestError(
            f"Checkpoint archive {archive} is corrupt ({type(exc).__name__}: {exc}); it was "
            "changed after it was saved. Save the checkpoint again."
        ) from None


def load_weights(data: bytes, label: str) -> dict[str, np.ndarray]:
    """``safetensors`` bytes as numpy arrays; bad bytes are a ``RestRequestError`` naming ``label``.

    Example:
        >>> load_weights(st_save({"a": np.zeros(2, np.float32)}), "x")["a"].shape
        (2,)
    """
    try:
        return dict(st_load(data))
    except (SafetensorError, ValueError) as exc:
        raise RestRequestError(
            f"{label} is not a valid safetensors file ({exc}); it was changed after it was "
            "saved. Save the checkpoint again."
        ) from None
