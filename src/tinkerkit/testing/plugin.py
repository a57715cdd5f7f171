"""pytest plugin (registered through the ``pytest11`` entry point): offline fixtures.

Every fixture keeps ``TINKERKIT_HOME`` in a temporary folder, so nothing a test does
touches the user's home.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def tk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``TINKERKIT_HOME`` for this test."""
    home = tmp_path / "tinkerkit-home"
    home.mkdir()
    monkeypatch.setenv("TINKERKIT_HOME", str(home))
    return home


@pytest.fixture
def tk_service(tk_home: Path) -> Any:
    """An offline ``ServiceClient`` on the ``mock`` backend."""
    from tinkerkit.connect import connect

    return connect("mock")


@pytest.fixture
def tk_training_client(tk_service: Any) -> Any:
    """A LoRA training client (rank 8, seed 0) on ``tinkerkit/tiny``, mock backend."""
    return tk_service.create_lora_training_client(
        base_model="tinkerkit/tiny", rank=8, seed=0
    ).result()
