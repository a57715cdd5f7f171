"""Shared fixtures of the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder of its own (tmp_path also holds the isolated TINKERKIT_HOME), so a test
    can assert that nothing but what it made is left in it."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder
