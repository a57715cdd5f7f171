"""A hash of a loop's input records as given, before anything is tokenized.

Known before a client exists, so a resume whose data changed is refused before any
training client (or its record under ``TINKERKIT_HOME``) is created. The tokenized
fingerprint (``sft_data.fingerprint``) is still checked once the tokenizer is known.

    records_fingerprint(sft_data.load("chats.jsonl"))  # '3f2a9c01d4e5b6a7'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from tinker import types

from tinkerkit.rules.images import image_file


def datum_bytes(datum: types.Datum) -> bytes:
    """Exactly what ``datum`` trains on: its tokens and images, then every loss input."""
    parts = []
    for chunk in datum.model_input.chunks:
        if isinstance(chunk, types.EncodedTextChunk):
            parts.append(np.asarray(chunk.tokens, dtype=np.int64).tobytes())
        else:  # an image: its bytes and how many positions it takes
            parts.append(chunk.model_dump_json().encode())
    for key in sorted(datum.loss_fn_inputs):
        parts.append(key.encode())
        parts.append(np.ascontiguousarray(datum.loss_fn_inputs[key].to_numpy()).tobytes())
    return b"".join(parts)


def _unserialisable(value: Any) -> str:
    """A record's in-memory image (a PIL image in a chat) as the hash of its pixels."""
    if hasattr(value, "tobytes"):
        return hashlib.sha256(value.tobytes()).hexdigest()
    return repr(value)


def _image_files(value: Any) -> Iterator[bytes]:
    """The contents' hashes of the local image files a record's image parts name, so a
    picture replaced under the same name changes the fingerprint."""
    if isinstance(value, dict):
        path = _local_image(value)
        if path is not None:
            yield hashlib.sha256(path.read_bytes()).digest()
        for item in value.values():
            yield from _image_files(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _image_files(item)


def _local_image(part: dict[str, Any]) -> Path | None:
    """The local file an image part names (a path or ``file://`` URL), if it exists."""
    image = part.get("image")
    if part.get("type") != "image" or not isinstance(image, str):
        return None
    path = image_file(image)
    return path if path is not None and path.is_file() else None


def _record_bytes(record: Any) -> bytes:
    if isinstance(record, types.Datum):
        return datum_bytes(record)
    if isinstance(record, BaseModel):
        text = record.model_dump_json(fallback=_unserialisable).encode()
        return b"".join([text, *_image_files(record.model_dump())])
    text = json.dumps(record, sort_keys=True, default=_unserialisable).encode()
    return b"".join([text, *_image_files(record)])


def records_fingerprint(records: Iterable[Any]) -> str:
    """16 hex digits naming exactly these records, in this order.

    Example:
        >>> records_fingerprint([{"prompt": "a"}]) == records_fingerprint([{"prompt": "a"}])
        True
    """
    digest = hashlib.sha256()
    for record in records:
        data = _record_bytes(record)
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]
