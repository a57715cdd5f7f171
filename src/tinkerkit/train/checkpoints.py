"""Checkpoints of a training loop, and resuming from them.

``LOG_DIR/checkpoints.jsonl`` gets one line per *complete* checkpoint — written only
after both the state (weights + optimizer) and the sampler weights are saved — with
``name``, ``step``, ``state_path``, ``sampler_path`` and the data cursor (and
``external_path``, the ``save_weights_external`` copy, where the loop made one:
``export_final``). A run killed
at any moment (even mid-write) resumes from the last complete line: a torn *last* line
(no newline, not JSON — what a kill -9 during the append leaves) is skipped with a
warning and cut off before the next append. Any other damaged line — torn in the middle,
not an object, a field missing or of the wrong type — is a ``RunLogError`` naming the
file and line: the loop cannot know which checkpoint the run really reached.

``LOG_DIR/run.json`` records what the run trains (model, rank, data fingerprint,
seed, batch size, epochs); resuming with any of them changed is refused, naming the
field. Each resume gets its own suffix for service-side checkpoint names, so re-saving
a name never fails a resume.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinkerkit.atomic import write_json_atomic as write_json_atomic
from tinkerkit.atomic import write_text_atomic as write_text_atomic
from tinkerkit.errors import ConfigMismatchError, RunLogError, TinkerkitWarning
from tinkerkit.errors import NothingToResumeError as NothingToResumeError

CHECKPOINTS_FILE = "checkpoints.jsonl"
MANIFEST_FILE = "run.json"


@dataclass(frozen=True)
class CheckpointEntry:
    name: str
    step: int
    state_path: str
    sampler_path: str
    epoch: int
    batch: int
    external_path: str | None = None
    """``tinker://<run>/external_weights/<name>``: the same weights, downloadable
    (``export_final``); None where the loop saved none."""

    def line(self) -> dict[str, Any]:
        """The entry as ``checkpoints.jsonl`` holds it (no ``external_path`` when None)."""
        return {k: v for k, v in asdict(self).items() if k != "external_path" or v is not None}


def append_line(path: Path, obj: Mapping[str, Any]) -> None:
    """Append one JSON line and make it durable before returning."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(obj, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_lines(path: Path) -> list[dict[str, Any]]:
    """JSON lines of ``path``, skipping a torn (incomplete) last line."""
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


_FIELD_TYPES: dict[str, type] = {
    "name": str,
    "step": int,
    "state_path": str,
    "sampler_path": str,
    "epoch": int,
    "batch": int,
    "external_path": str,
}
_OPTIONAL = {"external_path"}
"""Fields a line may leave out (or hold null): older lines, and checkpoints without one."""
# Lines written by earlier versions also carry "seed" (the run's seed, also in the run's
# identity manifest): read and ignored.
_DAMAGED = (
    "remove this line and the ones after it to resume from the checkpoint before it, "
    "or start the run again with --overwrite (overwrite=True)"
)


def _entry(path: Path, number: int, raw: str) -> CheckpointEntry:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise RunLogError(str(path), number, None, f"not a JSON line; {_DAMAGED}") from None
    if not isinstance(obj, dict):
        raise RunLogError(str(path), number, None, f"not a JSON object; {_DAMAGED}")
    for key, kind in _FIELD_TYPES.items():
        if key in _OPTIONAL and obj.get(key) is None:
            continue
        if key not in obj:
            raise RunLogError(str(path), number, key, f"missing; {_DAMAGED}")
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunLogError(
                str(path), number, key, f"{value!r} is not a {kind.__name__}; {_DAMAGED}"
            )
    return CheckpointEntry(**{key: obj[key] for key in _FIELD_TYPES if obj.get(key) is not None})


class CheckpointLog:
    """``LOG_DIR/checkpoints.jsonl``: one line per complete checkpoint, oldest first."""

    def __init__(self, log_dir: Path) -> None:
        self.path = log_dir / CHECKPOINTS_FILE

    def append(self, entry: CheckpointEntry) -> None:
        append_line(self.path, entry.line())

    def _text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RunLogError(str(self.path), None, None, f"not UTF-8 text; {_DAMAGED}") from None

    def _torn_tail(self, text: str) -> str | None:
        """The unfinished last line a kill -9 mid-append leaves, if there is one."""
        last = text.rsplit("\n", 1)[-1]
        if not last.strip():
            return None
        try:
            json.loads(last)
        except (json.JSONDecodeError, RecursionError):
            return last
        return None

    def entries(self) -> list[CheckpointEntry]:
        """Every complete checkpoint; ``RunLogError`` (file and line) for a damaged line."""
        if not self.path.is_file():
            return []
        text = self._text()
        lines = text.split("\n")
        if self._torn_tail(text) is not None:
            warnings.warn(
                f"{self.path}:{len(lines)}: an unfinished last line (the run was killed "
                "while writing it) is ignored",
                TinkerkitWarning,
                stacklevel=2,
            )
            lines = lines[:-1]
        return [
            _entry(self.path, number, raw)
            for number, raw in enumerate(lines, start=1)
            if raw.strip()
        ]

    def last(self) -> CheckpointEntry | None:
        entries = self.entries()
        return entries[-1] if entries else None

    def drop_torn_tail(self) -> None:
        """Cut off an unfinished last line, so the next append starts a line of its own."""
        if not self.path.is_file():
            return
        text = self._text()
        tail = self._torn_tail(text)
        if tail is not None:
            write_text_atomic(self.path, text[: len(text) - len(tail)])
        elif text and not text.endswith("\n"):  # complete, but killed before its newline
            write_text_atomic(self.path, text + "\n")

    def rewrite(self, entries: list[CheckpointEntry]) -> None:
        """Replace the log with ``entries`` (atomic: readers see the old or the new log)."""
        write_text_atomic(
            self.path, "".join(json.dumps(e.line(), sort_keys=True) + "\n" for e in entries)
        )


def load_manifest(log_dir: Path) -> dict[str, Any] | None:
    """``LOG_DIR/run.json``, or None; ``RunLogError`` if it is not a run record."""
    path = log_dir / MANIFEST_FILE
    if not path.is_file():
        return None
    advice = "restore it, or start the run again with --overwrite (overwrite=True)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise RunLogError(str(path), None, None, f"not valid JSON; {advice}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("identity"), dict):
        raise RunLogError(str(path), None, "identity", f"missing; {advice}")
    return manifest


def check_resume(saved: Mapping[str, Any], requested: Mapping[str, Any], log_dir: Path) -> None:
    """Refuse to resume if anything that defines the run changed; name the field."""
    for key, value in requested.items():
        if key in saved and saved[key] != value:
            raise ConfigMismatchError(key, saved[key], value, str(log_dir / MANIFEST_FILE))
