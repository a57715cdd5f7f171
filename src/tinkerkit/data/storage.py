"""Data files at a URL (``s3://``, ``gs://``, ``hf://datasets/...``, ``https://``...),
opened with fsspec (``pip install 'tinkerkit[storage]'``) and streamed like local files.

S3-compatible stores (Cloudflare R2, MinIO) need their endpoint: ``storage_options=
{"endpoint_url": ...}`` or the ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` environment
variables; credentials come from the usual ``AWS_*`` variables or ``storage_options``.

    with open_url("s3://bucket/chats.jsonl") as handle:
        first = handle.read(100)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from tinkerkit.data.sources import is_url as is_url
from tinkerkit.errors import DataError

INSTALL = "pip install 'tinkerkit[storage]'"


def display_url(url: str) -> str:
    """``url`` as errors and logs show it: without a user or password, and without a
    query string (a signed URL's signature is a secret).

    Example:
        >>> display_url("https://me:token@host/a.jsonl?X-Amz-Signature=abc")
        'https://host/a.jsonl?...'
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")) + ("?..." if parts.query else "")


def url_suffix(url: str) -> str:
    """The file extension of a URL's path (``.jsonl``), lower case."""
    return PurePosixPath(urlsplit(url).path).suffix.lower()


def _options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(storage_options or {})
    if url.split("://", 1)[0].lower() in ("s3", "s3a") and "endpoint_url" not in options:
        # botocore reads these too, but only recent versions: R2 must not silently be AWS.
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in options.get("client_kwargs", {}):
            options["endpoint_url"] = endpoint
    return options


@contextmanager
def open_url(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """A binary file object reading ``url`` as it streams (nothing read whole).
    ``DataError`` naming the URL when it is missing, a folder, or cannot be read;
    ``ImportError`` with the command to install when fsspec (or the protocol's
    package) is not installed."""
    name = display_url(url)
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"reading {name} needs fsspec: {INSTALL}") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **_options(url, storage_options))
    except ImportError as exc:  # the protocol's own package: s3fs, gcsfs, huggingface_hub
        raise ImportError(f"reading {name} needs {exc}: {INSTALL}") from None
    except ValueError as exc:
        raise DataError(name, None, None, f"is not a URL fsspec can read ({exc})") from None
    try:
        if fs.isdir(path):
            raise DataError(name, None, None, "is a folder, not a data file")
        handle = fs.open(path, "rb")
    except FileNotFoundError:
        raise DataError(name, None, None, "no such file") from None
    except DataError:
        raise
    except Exception as exc:  # the stores' own errors (credentials, network) are not OSErrors
        raise DataError(name, None, None, f"cannot be read ({_reason(exc)})") from None
    with handle:
        yield handle


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
