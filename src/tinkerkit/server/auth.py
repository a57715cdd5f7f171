"""The local API key, the middleware that checks it, and signed file URLs.

The SDK sends its key as ``X-API-Key`` and refuses keys without the ``tml-`` prefix
(``tinker.lib._auth_token_provider.ApiKeyAuthProvider``), so generated keys carry it.
The server tells the SDK that JWT exchange is off (``pjwt_auth_enabled=False`` in the
client config), so the key itself goes on every request and no token endpoint is used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from starlette.types import ASGIApp, Receive, Scope, Send

KEY_PREFIX = "tml-local-"
FILES_PREFIX = "/files/"
# Reachable without the key: a liveness probe, and signed download URLs (the signature
# in the path is their credential, as with the service's signed URLs).
_PUBLIC = ("/api/v1/healthz",)


def generate_api_key() -> str:
    """A fresh key the tinker SDK accepts (it must start with ``tml-``).

    Example:
        >>> generate_api_key().startswith("tml-")
        True
    """
    return KEY_PREFIX + secrets.token_urlsafe(24)


def check_api_key(key: str) -> str:
    """Refuse a key the SDK would refuse, with the reason."""
    if not key.startswith("tml-"):
        raise ValueError("the API key must start with 'tml-' (the tinker SDK refuses others)")
    if len(key) < 12:
        raise ValueError("the API key is too short; use at least 12 characters")
    return key


class AuthMiddleware:
    """Answers 401 in the service's shape unless ``X-API-Key`` matches."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "detail": "Invalid or missing API key for this tinkerkit server: set "
                "TINKER_API_KEY (or api_key=...) to the key `tinkerkit serve` printed "
                "(or its --api-key / TINKERKIT_SERVE_API_KEY)."
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if path in _PUBLIC or path.startswith(FILES_PREFIX):
            return True
        for name, value in scope.get("headers", []):
            if name == b"x-api-key":
                return hmac.compare_digest(value, self._key)
        return False


class UrlSigner:
    """Time-limited signatures for ``/files/<token>/<path>`` download URLs."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, path: str, expires: int) -> str:
        msg = f"{expires}:{path}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    def sign(self, path: str, lifetime_s: int = 3600) -> tuple[str, int]:
        """A token for ``path`` valid for ``lifetime_s`` seconds, and its expiry time.

        Example:
            >>> token, expires = UrlSigner().sign("run/external_weights/x/adapter_config.json")
        """
        expires = int(time.time()) + lifetime_s
        return f"{expires}-{self._mac(path, expires)}", expires

    def verify(self, path: str, token: str) -> bool:
        expires_text, _, mac = token.partition("-")
        if not expires_text.isdigit() or int(expires_text) < time.time():
            return False
        return hmac.compare_digest(mac, self._mac(path, int(expires_text)))
