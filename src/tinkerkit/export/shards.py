"""Read a model folder's safetensors shards lazily, and write one tensor at a time.

``write_safetensors`` lays out the header from the shapes and dtypes first, then
streams each tensor's bytes to disk as it is produced, so writing a shard needs
memory for one tensor, not for the whole shard (``safetensors.torch.save_file``
would hold the shard and a byte copy of it).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import safe_open

from tinkerkit.export.errors import BaseModelError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def list_shards(model_dir: Path) -> list[str]:
    """The safetensors files of ``model_dir`` (from its index, else ``model.safetensors``).

    Example:
        >>> list_shards(Path("tiny-base"))
        ['model.safetensors']
    """
    index = model_dir / INDEX
    if index.is_file():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return sorted(set(weight_map.values()))
    if (model_dir / SINGLE).is_file():
        return [SINGLE]
    pickled = [p.name for p in model_dir.glob("*.bin")] + [p.name for p in model_dir.glob("*.pt")]
    hint = (
        f" It has {pickled[0]}: pickled weights, which tinkerkit never loads (unpickling runs "
        "code). Convert the model to safetensors first."
        if pickled
        else ""
    )
    raise BaseModelError(f"{model_dir} holds no safetensors weights.{hint}")


def weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every weight's shape, read from the shard headers (no tensor is loaded)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in list_shards(model_dir):
        with safe_open(str(model_dir / shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def tensor_dtype(code: str) -> torch.dtype:
    if code not in _DTYPES:
        raise BaseModelError(f"unsupported safetensors dtype {code!r}")
    return _DTYPES[code]


def _dtype_code(dtype: torch.dtype) -> str:
    return next(code for code, value in _DTYPES.items() if value == dtype)


def write_safetensors(
    path: Path,
    layout: Iterable[tuple[str, tuple[int, ...], torch.dtype]],
    produce: Callable[[str], torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> int:
    """Write a safetensors file whose tensors (``name, shape, dtype``) come from ``produce``.

    ``produce(name)`` is called once per tensor, in ``layout`` order, and its result is
    written and dropped before the next one. Returns the bytes of tensor data written.
    """
    entries = list(layout)
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, shape, dtype in entries:
        size = torch.empty((), dtype=dtype).element_size()
        for dim in shape:
            size *= dim
        header[name] = {
            "dtype": _dtype_code(dtype),
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned, as safetensors writes it
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for name, shape, dtype in entries:
            tensor = produce(name)
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise ValueError(f"{name}: produced {tuple(tensor.shape)} {tensor.dtype}")
            data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
            out.write(data.numpy().data)
    return offset
