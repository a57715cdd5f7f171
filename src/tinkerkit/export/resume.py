"""What a ``.part`` file is a part of: the validators that make resuming it safe.

Next to ``<dest>.part`` the fetcher keeps ``<dest>.part.json``: the URL (without its
query: signed URLs are signed anew on every run), the size the server stated, and its
strong ``ETag`` or ``Last-Modified``. A resumed request sends that validator as
``If-Range``: a server whose file changed answers ``200`` with the whole new file
instead of ``206``, and the fetcher restarts from byte 0. A ``.part`` without a
validator is never resumed across runs (there is no way to tell it is still current).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from tinkerkit.atomic import write_text_atomic
from tinkerkit.export.errors import redact


@dataclass(frozen=True)
class PartInfo:
    """The identity of the file a ``.part`` holds the beginning of.

    Example:
        >>> PartInfo("https://x/a", 10, '"abc"', None).validator
        '"abc"'
    """

    url: str
    total: int | None
    etag: str | None
    last_modified: str | None
    md5: str | None = None  # a content digest the server stated (``checksums``)

    @property
    def validator(self) -> str | None:
        """The ``If-Range`` value: the strong ETag, else the Last-Modified date."""
        return self.etag or self.last_modified

    def same_file(self, response: httpx.Response) -> bool:
        """Whether ``response`` describes the same file (validators agree where stated)."""
        etag = response.headers.get("etag")
        if self.etag and etag and etag != self.etag:
            return False
        modified = response.headers.get("last-modified")
        return not (self.last_modified and modified and modified != self.last_modified)


def describe(url: str, response: httpx.Response, total: int | None, md5: str | None) -> PartInfo:
    """The ``PartInfo`` of a ``200`` response (weak ETags cannot validate a range)."""
    etag = response.headers.get("etag")
    return PartInfo(
        url=redact(url),
        total=total,
        etag=etag if etag and not etag.startswith("W/") else None,
        last_modified=response.headers.get("last-modified"),
        md5=md5,
    )


def sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def save(part: Path, info: PartInfo) -> None:
    """Write ``part``'s sidecar (to a temp file, renamed: never half a sidecar)."""
    write_text_atomic(sidecar(part), json.dumps(asdict(info)))


def load(part: Path, url: str) -> PartInfo | None:
    """The sidecar of a ``.part`` left by an earlier run for ``url``, if it can be resumed."""
    try:
        data = json.loads(sidecar(part).read_text())
        info = PartInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    if info.url != redact(url) or info.validator is None or not part.is_file():
        return None
    return info


def discard(part: Path) -> None:
    """Delete ``part`` and its sidecar."""
    part.unlink(missing_ok=True)
    sidecar(part).unlink(missing_ok=True)
