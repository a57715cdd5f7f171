"""Checkpoints of a training loop, and resuming from them.

``LOG_DIR/checkpoints.jsonl`` gets one line per *complete* checkpoint — written only
after both the state (weights + optimizer) and the sampler weights are saved — with
``name``, ``step``, ``state_path``, ``sampler_path`` and the data cursor. A run killed
at any moment (even mid-write) resumes from the last complete line; a torn last line
is ignored.

``LOG_DIR/run.json`` records what the run trains (model, rank, data fingerprint,
seed, batch size, epochs); resuming with any of them changed is refused, naming the
field. Each resume gets its own suffix for service-side checkpoint names, so re-saving
a name never fails a resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinkerkit.errors import ConfigMismatchError, TinkerkitError

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
    seed: int


def append_line(path: Path, obj: Mapping[str, Any]) -> None:
    """Append one JSON line and make it durable before returning."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(obj, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


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


class CheckpointLog:
    def __init__(self, log_dir: Path) -> None:
        self.path = log_dir / CHECKPOINTS_FILE

    def append(self, entry: CheckpointEntry) -> None:
        append_line(self.path, asdict(entry))

    def entries(self) -> list[CheckpointEntry]:
        fields = set(CheckpointEntry.__dataclass_fields__)
        return [
            CheckpointEntry(**{k: v for k, v in d.items() if k in fields})
            for d in read_lines(self.path)
        ]

    def last(self) -> CheckpointEntry | None:
        entries = self.entries()
        return entries[-1] if entries else None


def load_manifest(log_dir: Path) -> dict[str, Any] | None:
    path = log_dir / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_resume(saved: Mapping[str, Any], requested: Mapping[str, Any], log_dir: Path) -> None:
    """Refuse to resume if anything that defines the run changed; name the field."""
    for key, value in requested.items():
        if key in saved and saved[key] != value:
            raise ConfigMismatchError(key, saved[key], value, str(log_dir / MANIFEST_FILE))


class NothingToResumeError(TinkerkitError):
    def __init__(self, log_dir: Path) -> None:
        super().__init__(
            f"--resume was given but {log_dir / CHECKPOINTS_FILE} has no complete checkpoint; "
            "run without --resume to start fresh"
        )
