"""Check a safetensors file's header before any library reads it.

A forged header (a length beyond the file, offsets outside the data, tensors that
overlap, an unknown dtype, a shape that does not fit its bytes) would otherwise end
as a Rust ``SafetensorError`` without the file's name, or as a mapped read past the
end of the file. The rules are the format's own (those ``safetensors`` enforces):
the tensors' byte ranges tile the data section exactly, in order, without gaps.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from tinkerkit.export.errors import SafetensorsFormatError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own cap
ITEM_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
}


def check_safetensors(
    path: Path, *, label: str | None = None
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Validate ``path``'s header; return tensor name → ``(dtype, shape)``.

    Raises ``SafetensorsFormatError`` naming the file (as ``label``, default its path)
    and the header field at fault.

    Example:
        >>> check_safetensors(Path("adapter_model.safetensors"))["base_model.model.lm_head.lora_A.weight"]
        ('F32', (8, 64))
    """
    label = label or str(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsFormatError(label, "header length", f"the file is only {size} bytes")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise SafetensorsFormatError(
                label,
                "header length",
                f"it claims {length} bytes, but the file holds {size - 8} after it "
                f"(and the cap is {MAX_HEADER_BYTES})",
            )
        blob = f.read(length)
    return check_header(label, blob, size - 8 - length)


def check_header(
    label: str, blob: bytes, data_bytes: int
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Validate a header's JSON ``blob`` against a data section of ``data_bytes``."""
    try:
        header = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else f"not JSON ({exc})"
        raise SafetensorsFormatError(label, "header", reason) from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError(label, "header", "is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsFormatError(label, "__metadata__", "must map strings to strings")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        dtype, shape, begin, end = _entry(label, name, entry, data_bytes)
        tensors[name] = (dtype, shape)
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            problem = "overlaps the tensor before it" if begin < position else "leaves a gap"
            raise SafetensorsFormatError(label, f"{name}.data_offsets", problem)
        position = end
    if position != data_bytes:
        raise SafetensorsFormatError(
            label, "data_offsets", f"the tensors cover {position} of the {data_bytes} data bytes"
        )
    return tensors


def _entry(
    label: str, name: str, entry: object, data_bytes: int
) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict):
        raise SafetensorsFormatError(label, name, "is not a tensor entry (a JSON object)")
    dtype = entry.get("dtype")
    if dtype not in ITEM_BYTES:
        raise SafetensorsFormatError(
            label,
            f"{name}.dtype",
            f"{dtype!r} is not a safetensors dtype ({', '.join(ITEM_BYTES)})",
        )
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsFormatError(
            label, f"{name}.shape", f"{shape!r} is not a list of non-negative integers"
        )
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise SafetensorsFormatError(
            label, f"{name}.data_offsets", f"{offsets!r} is not [begin, end] with begin <= end"
        )
    begin, end = offsets
    if end > data_bytes:
        raise SafetensorsFormatError(
            label,
            f"{name}.data_offsets",
            f"{offsets} lie outside the file's {data_bytes} data bytes",
        )
    expected = math.prod(shape) * ITEM_BYTES[dtype]
    if end - begin != expected:
        raise SafetensorsFormatError(
            label,
            f"{name}.data_offsets",
            f"span {end - begin} bytes, but shape {shape} of {dtype} takes {expected}",
        )
    return dtype, tuple(shape), begin, end


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
