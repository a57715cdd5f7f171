"""The sandbox's wire format: plain values as tagged JSON, framed on a pipe.

The sandboxed program and the test judge (``sandbox_judge.py``) talk only through two
pipes, in messages of this module's format: a 4-byte big-endian length, then UTF-8 JSON.
Values are *data*, never code: ``None``, ``bool``, ``int``, ``float``, ``complex``,
``str``, ``bytes``, ``bytearray`` and ``list``/``tuple``/``dict``/``set``/``frozenset``
of them. Anything else crosses as a reference made by the side's ``refer`` callback
(``{"t": "ref", "id": N}``), which the other side's ``resolve`` callback interprets.

    >>> encode([1, (2.5, b"x")], refer=None)
    {'t': 'list', 'v': [1, {'t': 'tuple', 'v': [2.5, {'t': 'bytes', 'v': '78'}]}]}
    >>> decode(encode({"a": {1, 2}}, refer=None), resolve=None)
    {'a': {1, 2}}

Decoding is strict (the judge reads what untrusted code wrote): an unknown tag, a bare
JSON list or object, nesting deeper than ``MAX_DEPTH`` or a message over ``MAX_MESSAGE``
bytes is a :class:`WireError`. This file is stdlib-only: the sandbox runs it from its
source text, before (and without) any site-packages.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

MAX_MESSAGE = 16 * 1024 * 1024
MAX_DEPTH = 100
_SMALL_INT = 1 << 63  # larger ints travel as hex: JSON readers cap decimal digits

Refer = Callable[[Any], dict[str, Any]] | None
Resolve = Callable[[dict[str, Any]], Any] | None


class WireError(Exception):
    """A message that is not in the wire format (or a pipe closed mid-message)."""


def encode(value: Any, refer: Refer, depth: int = 0) -> Any:
    """``value`` as JSON-ready data; objects that are not data go through ``refer``.

    Subclasses of the data types (``namedtuple``, ``Counter``, ``IntEnum``) travel as
    their base type. Without ``refer``, anything else is a ``TypeError``.

    Example:
        >>> encode(2**70, refer=None)
        {'t': 'int', 'v': '0x400000000000000000'}
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"the value is nested more than {MAX_DEPTH} deep")
    if value is None or type(value) in (bool, str, float):
        return value
    if isinstance(value, int):
        number = int.__index__(value)
        return number if -_SMALL_INT < number < _SMALL_INT else {"t": "int", "v": hex(number)}
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        return {"t": "complex", "v": [value.real, value.imag]}
    if isinstance(value, bytes | bytearray):
        kind = "bytearray" if isinstance(value, bytearray) else "bytes"
        return {"t": kind, "v": bytes(value).hex()}
    if isinstance(value, dict):
        pairs = [
            [encode(k, refer, depth + 1), encode(v, refer, depth + 1)] for k, v in dict.items(value)
        ]
        return {"t": "dict", "v": pairs}
    for kind, base in _SEQUENCES:
        if isinstance(value, base):
            return {
                "t": kind,
                "v": [encode(item, refer, depth + 1) for item in base.__iter__(value)],
            }
    if refer is None:
        raise TypeError(f"a {type(value).__name__} is not plain data")
    return refer(value)


_SEQUENCES: tuple[tuple[str, Any], ...] = (
    ("list", list),
    ("tuple", tuple),
    ("set", set),
    ("frozenset", frozenset),
)
_BUILDERS: dict[str, Callable[[list[Any]], Any]] = {
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}


def decode(data: Any, resolve: Resolve, depth: int = 0) -> Any:
    """The value ``data`` encodes; tags other than data go to ``resolve``.

    Raises:
        WireError: for anything :func:`encode` could not have written.

    Example:
        >>> decode({"t": "complex", "v": [1.0, -2.0]}, resolve=None)
        (1-2j)
    """
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} deep")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or type(data.get("t")) is not str:
        raise WireError(f"not a tagged value: {type(data).__name__}")
    tag, payload = data["t"], data.get("v")
    try:
        if tag in _BUILDERS and type(payload) is list:
            return _BUILDERS[tag]([decode(item, resolve, depth + 1) for item in payload])
        if tag == "dict" and type(payload) is list:
            pairs = [_pair(item, resolve, depth + 1) for item in payload]
            return dict(pairs)
        if tag in ("bytes", "bytearray") and type(payload) is str:
            raw = bytes.fromhex(payload)
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "int" and type(payload) is str and len(payload) <= 2 * MAX_MESSAGE:
            return int(payload, 16)
        if tag == "complex" and type(payload) is list and len(payload) == 2:
            real, imag = payload
            if type(real) is float and type(imag) is float:
                return complex(real, imag)
    except (TypeError, ValueError) as exc:  # an unhashable key, bad hex
        raise WireError(f"a bad {tag!r} value: {exc}") from None
    if resolve is not None and tag not in _BUILDERS and tag not in _DATA_TAGS:
        return resolve(data)
    raise WireError(f"a bad {tag!r} value")


_DATA_TAGS = frozenset(("dict", "bytes", "bytearray", "int", "complex"))


def _pair(item: Any, resolve: Resolve, depth: int) -> tuple[Any, Any]:
    if type(item) is not list or len(item) != 2:
        raise WireError("a dict item that is not a [key, value] pair")
    return decode(item[0], resolve, depth), decode(item[1], resolve, depth)


def send(fd: int, message: Any) -> None:
    """Write one framed message (a JSON-ready value) to ``fd``.

    Example:
        >>> r, w = os.pipe(); send(w, {"op": "ready"}); receive(r)
        {'op': 'ready'}
    """
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_MESSAGE:
        raise ValueError(f"a message of {len(body)} bytes is over the {MAX_MESSAGE}-byte limit")
    data = memoryview(struct.pack(">I", len(body)) + body)
    while data:
        data = data[os.write(fd, data) :]


def receive(fd: int) -> Any:
    """Read one framed message from ``fd``; None at a clean end of the pipe.

    Raises:
        WireError: a torn or oversized frame, or a body that is not JSON.

    Example:
        >>> r, w = os.pipe(); os.close(w); receive(r) is None
        True
    """
    header = _read_exactly(fd, 4)
    if not header:
        return None
    if len(header) != 4:
        raise WireError("the pipe closed in the middle of a message header")
    (size,) = struct.unpack(">I", header)
    if size > MAX_MESSAGE:
        raise WireError(f"a message of {size} bytes is over the {MAX_MESSAGE}-byte limit")
    body = _read_exactly(fd, size)
    if len(body) != size:
        raise WireError("the pipe closed in the middle of a message")
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a message that is not JSON: {str(exc)[:200]}") from None


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, min(size - len(chunks), 1 << 20))
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)
