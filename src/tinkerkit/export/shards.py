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

from tinkerkit.export.base_files import base_file
from tinkerkit.export.errors import BaseModelError
from tinkerkit.export.safetensors_check import check_safetensors

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

    Every shard is checked to be a regular file of the folder (``base_files``): an index
    naming ``../x`` or an absolute path, or a link out of the folder, is refused.

    Example:
        >>> list_shards(Path("tiny-base"))
        ['model.safetensors']
    """
    index = model_dir / INDEX
    if index.is_file() or index.is_symlink():
        shards = sorted(set(_weight_map(model_dir).values()))
        if not shards:
            raise BaseModelError(
                f"{index}: 'weight_map' is empty; use a complete copy of the model."
            )
        return shards
    if (model_dir / SINGLE).is_file() or (model_dir / SINGLE).is_symlink():
        base_file(model_dir, SINGLE, "the weights file")
        return [SINGLE]
    pickled = [p.name for p in model_dir.glob("*.bin")] + [p.name for p in model_dir.glob("*.pt")]
    hint = (
        f" It has {pickled[0]}: pickled weights, which tinkerkit never loads (unpickling runs "
        "code). Convert the model to safetensors first."
        if pickled
        else ""
    )
    raise BaseModelError(f"{model_dir} holds no safetensors weights.{hint}")


def _weight_map(model_dir: Path) -> dict[str, str]:
    index = base_file(model_dir, INDEX, "the shard index")
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BaseModelError(
            f"{index} is not valid JSON ({type(exc).__name__}: {exc}); use a clean copy of the model."
        ) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise BaseModelError(f"{index} has no 'weight_map' object; use a clean copy of the model.")
    for key, shard in weight_map.items():
        base_file(model_dir, shard, f"{INDEX} weight_map[{key!r}]")
    return weight_map


def weight_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every weight's shape, from the shard headers (each checked; no tensor is loaded)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in list_shards(model_dir):
        for key, (_dtype, shape) in check_safetensors(model_dir / shard).items():
            shapes[key] = shape
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
    # "xb": never open (and truncate) a file that is already there, wherever it points.
    with open(path, "xb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for name, shape, dtype in entries:
            tensor = produce(name)
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise ValueError(f"{name}: produced {tuple(tensor.shape)} {tensor.dtype}")
            data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
            out.write(data.numpy().data)
    return offset
