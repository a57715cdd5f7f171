"""Checks on a downloaded file: its size, and an md5 or sha256 when one is known.

Only headers that really are a digest of the content are trusted:

- ``x-goog-hash: md5=...`` (Google Cloud Storage; absent for composite objects);
- ``Content-MD5`` of a ``200`` response (of a ``206`` it covers just the range);
- an ``ETag`` of 32 hex digits only from Amazon S3 (``x-amz-request-id`` present), whose
  single-part ETags are the md5, and not for SSE-KMS or SSE-C objects, whose are not.

Any other ETag is an opaque version tag (Starlette, which ``tinkerkit serve`` runs on,
makes it from the file's mtime and size; GCS's JSON API and nginx have their own
schemes), so it is used to validate a resume (``If-Range``), never as a checksum.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

import httpx

from tinkerkit.export.errors import ChecksumError, SizeMismatchError

CHUNK = 1 << 20


def md5_from_headers(response: httpx.Response) -> str | None:
    """The whole object's md5 (hex) stated by ``response``, or None.

    Example:
        >>> s3 = {"ETag": '"9e107d9d372bb6826bd81d3542a419d6"', "x-amz-request-id": "1"}
        >>> md5_from_headers(httpx.Response(200, headers=s3))
        '9e107d9d372bb6826bd81d3542a419d6'
    """
    for item in response.headers.get("x-goog-hash", "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "md5" and value:
            return _b64_to_hex(value)
    if response.status_code == 200 and response.headers.get("content-md5"):
        return _b64_to_hex(response.headers["content-md5"])
    headers = response.headers
    encrypted = headers.get("x-amz-server-side-encryption", "").startswith("aws:kms") or (
        "x-amz-server-side-encryption-customer-algorithm" in headers
    )
    if "x-amz-request-id" in headers and not encrypted:
        # S3 single-part ETags are the md5 in hex; multipart ones contain a '-'.
        etag = headers.get("etag", "")
        if not etag.startswith("W/") and re.fullmatch(r"[0-9a-fA-F]{32}", etag.strip('"')):
            return etag.strip('"').lower()
    return None


def _b64_to_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def file_hash(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(
    url: str, path: Path, *, size: int | None, md5: str | None, sha256: str | None
) -> None:
    """Raise ``SizeMismatchError`` / ``ChecksumError`` unless ``path`` is what was promised.

    A caller-given sha256 wins over a server-stated md5; one strong check is enough.
    """
    got = path.stat().st_size
    if size is not None and got != size:
        raise SizeMismatchError(url, size, got)
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            digest = file_hash(path, algorithm)
            if digest != expected.lower():
                raise ChecksumError(url, algorithm, expected.lower(), digest)
            return
