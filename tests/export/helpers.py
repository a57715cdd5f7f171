"""Helpers shared by the export tests."""

from __future__ import annotations

from pathlib import Path


def leftovers(folder: Path) -> list[str]:
    """The names in ``folder``, hidden staging folders included."""
    return sorted(p.name for p in folder.iterdir())
