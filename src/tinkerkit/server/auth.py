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
import threading
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from tinkerkit.server.service import Service

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


class Host:
    """The services one server answers for, by API key (compared in constant time).

    Example:
        >>> host = Host()
        >>> key = host.add(service)            # a fresh key, or host.add(service, key)
        >>> host.lookup(key.encode()) is service
        True
    """

    def __init__(self) -> None:
        self._services: dict[bytes, Service] = {}
        self._lock = threading.Lock()

    def add(self, service: Service, api_key: str | None = None) -> str:
        key = check_api_key(api_key) if api_key else generate_api_key()
        with self._lock:
            self._services[key.encode()] = service
        return key

    def remove(self, api_key: str) -> Service | None:
        with self._lock:
            return self._services.pop(api_key.encode(), None)

    def services(self) -> list[Service]:
        with self._lock:
            return list(self._services.values())

    def lookup(self, key: bytes) -> Service | None:
        with self._lock:
            candidates = list(self._services.items())
        found = None
        for known, service in candidates:
            if hmac.compare_digest(known, key):
                found = service
        return found


class AuthMiddleware:
    """Answers 401 in the service's shape unless ``X-API-Key`` is one of the host's keys;
    the request then carries that key's service (``scope["state"]["service"]``)."""

    def __init__(self, app: ASGIApp, host: Host) -> None:
        self.app = app
        self._host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "detail": "Invalid or missing API key for this tinkerkit server: set "
                "TINKER_API_KEY (or api_key=...) to the key `tinkerkit serve` printed "
                "(or the one in its TINKERKIT_SERVE_API_KEY / --api-key-file)."
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
        service = None
        for name, value in scope.get("headers", []):
            if name == b"x-api-key":
                service = self._host.lookup(value)
                break
        if service is not None:
            scope.setdefault("state", {})["service"] = service
            return True
        return path in _PUBLIC or path.startswith(FILES_PREFIX)


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
