"""Typed errors of ``tinkerkit.export``. Each names the URL, file or member at fault
and says what to do next."""

from __future__ import annotations

from tinkerkit.errors import TinkerkitError

__all__ = [
    "AdapterFormatError",
    "BaseModelError",
    "ChecksumError",
    "DownloadError",
    "ExportError",
    "OutputExistsError",
    "SafetensorsFormatError",
    "SizeMismatchError",
    "UnsafeArchiveError",
    "UnsupportedModelError",
    "UnsupportedSourceError",
    "UrlExpiredError",
]


class ExportError(TinkerkitError):
    """Base class of every export, download and conversion error."""


class DownloadError(ExportError):
    """A download failed for good (after retries, or on a non-retryable status)."""

    def __init__(self, url: str, reason: str, hint: str = "") -> None:
        self.url = url
        self.reason = reason
        text = f"Download of {redact(url)} failed: {reason}."
        if hint:
            text += f" {hint}"
        super().__init__(text)


class UrlExpiredError(DownloadError):
    """A signed URL was refused (403/410) or its expiry has passed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            url,
            reason,
            "Signed download URLs expire: request fresh ones (rest_client."
            "get_external_weights_urls(path), or run `tinkerkit download tinker://...` again, "
            "which signs new URLs) and retry.",
        )


class SizeMismatchError(DownloadError):
    def __init__(self, url: str, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__(
            url,
            f"expected {expected} bytes, got {got}",
            "The file changed on the server or the transfer was corrupted; download it again.",
        )


class ChecksumError(DownloadError):
    def __init__(self, url: str, algorithm: str, expected: str, got: str) -> None:
        self.algorithm = algorithm
        super().__init__(
            url,
            f"{algorithm} checksum mismatch (expected {expected}, got {got})",
            "The downloaded bytes are corrupt; nothing was kept. Download it again.",
        )


class UnsafeArchiveError(ExportError):
    """A tar member would escape the output folder, is a link/device, or is absurdly big."""

    def __init__(self, archive: str, member: str, problem: str) -> None:
        self.archive = archive
        self.member = member
        super().__init__(
            f"Refusing to extract {archive}: member {member!r} {problem}. Nothing was "
            "extracted. The archive is corrupt or malicious; obtain it again from a source "
            "you trust (a Tinker checkpoint archive only holds plain files)."
        )


class OutputExistsError(ExportError):
    def __init__(self, path: str, problem: str = "already exists and is not empty") -> None:
        self.path = path
        super().__init__(f"{path} {problem}; pick a new or empty folder (nothing is overwritten).")


class UnsupportedSourceError(ExportError):
    """The source cannot be downloaded this way (e.g. a sampler checkpoint on tinker 0.38)."""


class AdapterFormatError(ExportError):
    """An adapter folder or file is missing, malformed, or does not fit the base model."""


class UnsupportedModelError(ExportError):
    """The base model's family (MoE, gpt-oss, vision, ...) is not handled by this exporter."""


class BaseModelError(ExportError):
    """The base model could not be found locally (tinkerkit never downloads one), or its
    folder is unusable (a shard or link pointing outside it, a malformed index)."""


class SafetensorsFormatError(AdapterFormatError, BaseModelError):
    """A safetensors file whose header is forged or corrupt (adapter or base shard)."""

    def __init__(self, path: str, field: str, problem: str) -> None:
        self.path = path
        self.field = field
        super().__init__(
            f"{path} is not a valid safetensors file: header field {field!r}: {problem}. "
            "It is corrupt or was tampered with; obtain the file again from its source."
        )


def redact(url: str) -> str:
    """``url`` without its query string: signed URLs carry credentials there."""
    return url.split("?", 1)[0]
