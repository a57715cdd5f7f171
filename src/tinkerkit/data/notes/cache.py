"""On-disk cache of generated text, so that a re-run does not pay for generation again.

Key: sha256 of (generator identity, prompt). Value: the raw generated text, in a JSON file
``<dir>/<key[:2]>/<key>.json`` written atomically. The raw text (not the parsed pairs) is
stored so that improving the parser never requires generating again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from tinkerkit.data.notes.output import atomic_writer
from tinkerkit.paths import tinkerkit_home

__all__ = ["NotesCache", "default_cache_dir"]

logger = logging.getLogger("tinkerkit")

_VERSION = 1


def default_cache_dir() -> Path:
    """``$TINKERKIT_HOME/cache/notes``.

    Example:
        >>> default_cache_dir()
        PosixPath('/home/me/.cache/tinkerkit/cache/notes')
    """
    return tinkerkit_home() / "cache" / "notes"


class NotesCache:
    """Generated text keyed by (generator identity, prompt).

    Example:
        >>> cache = NotesCache()
        >>> cache.put("mock|tinkerkit/tiny", "Write 3 pairs...", "[...]")
        >>> cache.get("mock|tinkerkit/tiny", "Write 3 pairs...")
        '[...]'
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        # Resolved now, not per call: a run keeps one folder even if the env changes.
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"NotesCache({str(self.directory)!r})"

    @staticmethod
    def key(identity: str, prompt: str) -> str:
        """The hex sha256 of (identity, prompt); JSON-encoded so that no pair collides."""
        payload = json.dumps([identity, prompt], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, identity: str, prompt: str) -> str | None:
        """The cached text, or ``None`` (a missing or unreadable entry is a miss)."""
        key = self.key(identity, prompt)
        file = self._file(key)
        try:
            entry = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring unreadable cache entry %s (%s); regenerating.", file, exc)
            return None
        if (
            not isinstance(entry, dict)
            or entry.get("identity") != identity
            or not isinstance(entry.get("text"), str)
        ):
            logger.warning("Ignoring malformed cache entry %s; regenerating.", file)
            return None
        text: str = entry["text"]
        return text

    def put(self, identity: str, prompt: str, text: str) -> None:
        """Store ``text`` for (identity, prompt), replacing any previous entry atomically."""
        key = self.key(identity, prompt)
        entry = {"version": _VERSION, "identity": identity, "text": text}
        with atomic_writer(self._file(key)) as handle:
            json.dump(entry, handle, ensure_ascii=False)
