"""One quick look at a Tinker server before the SDK starts retrying against it.

Against a dead port (or without a network) the SDK retries its first request for minutes
without a word, and a wrong key fails only at the first call. ``tk.connect("tinker")``
sends that first request once itself, with a short timeout, to the Tinker service or to
``base_url=`` / ``TINKER_BASE_URL``: nothing answering is ``ServerUnreachableError``
(saying how to run offline), a 401 ``APIKeyRefusedError``, each one line naming the URL;
any other answer means the server is there and the SDK takes over.
"""

from __future__ import annotations

import httpx
from tinker.lib.base_url import DEFAULT_BASE_URL

from tinkerkit.errors import APIKeyRefusedError, ServerUnreachableError

PROBE_TIMEOUT_S = 5.0
"""How long the probe waits for the server, seconds."""


def probe_base_url(
    base_url: str,
    api_key: str | None,
    timeout: float = PROBE_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Refuse ``base_url`` if nothing answers there within ``timeout`` seconds, or if
    it refuses ``api_key`` (the SDK's first request, ``POST /api/v1/client/config``).

    Example:
        >>> probe_base_url("http://127.0.0.1:9", "tml-...")  # doctest: +SKIP
        ServerUnreachableError: No Tinker server answers at http://127.0.0.1:9 (...)
    """
    import tinker

    url = base_url.rstrip("/")
    service = url == DEFAULT_BASE_URL.rstrip("/")
    headers = {"X-API-Key": api_key} if api_key else {}
    body = {"sdk_version": tinker.__version__}
    try:
        # A slow answer is still an answer: only connecting is held to ``timeout``.
        limits = httpx.Timeout(timeout, read=max(timeout, 30.0))
        with httpx.Client(timeout=limits, transport=transport) as client:
            response = client.post(f"{url}/api/v1/client/config", json=body, headers=headers)
    except httpx.TimeoutException:
        raise ServerUnreachableError(
            url, f"no answer within {timeout:g} s", service=service
        ) from None
    except (httpx.TransportError, httpx.InvalidURL) as exc:
        reason = str(exc) or type(exc).__name__
        raise ServerUnreachableError(url, reason, service=service) from None
    if response.status_code == 401:
        raise APIKeyRefusedError(url)
