"""Request bodies within ``MAX_REQUEST_BYTES``: as sent, and once decompressed.

A body over the limit is answered 400 (``tinker.BadRequestError`` in the SDK) naming the
limit: before it is read when ``Content-Length`` says so, else as soon as the bytes
received pass it. A zstd body is decompressed in bounded steps, so a small frame that
claims (or expands to) gigabytes is refused without allocating them.
"""

from __future__ import annotations

import io
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinkerkit.backends.limits import check_body_size
from tinkerkit.errors import RequestLimitError
from tinkerkit.server.responses import receive_body

_STEP = 1024 * 1024


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


async def _refuse(send: Send, exc: RequestLimitError) -> None:
    body = json.dumps({"detail": str(exc)}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The client may still be sending: close the connection rather than read the rest.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: request bodies of at most ``MAX_REQUEST_BYTES``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_body_size(_declared_length(scope))
        except RequestLimitError as exc:
            await _refuse(send, exc)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            # A body still arriving when the server stops is answered 503, not cancelled.
            message = await receive_body(receive)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                # Raised in the route reading the body; the app answers it with a 400.
                check_body_size(received)
            return message

        await self.app(scope, counted, send)


def decompress_zstd(body: bytes) -> bytes:
    """``body`` zstd-decompressed; ``RequestLimitError`` once past ``MAX_REQUEST_BYTES``.

    Example:
        >>> import zstandard
        >>> decompress_zstd(zstandard.ZstdCompressor().compress(b"abc"))
        b'abc'
    """
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body))
    out = bytearray()
    while chunk := reader.read(_STEP):
        out += chunk
        check_body_size(len(out), "decompressed request body")
    return bytes(out)
