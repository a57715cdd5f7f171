"""Where tinkerkit keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path


def tinkerkit_home() -> Path:
    """``$TINKERKIT_HOME``, or ``~/.cache/tinkerkit``: offline checkpoints and caches.

    Example:
        >>> os.environ["TINKERKIT_HOME"] = "/tmp/tk"; str(tinkerkit_home())
        '/tmp/tk'
    """
    configured = os.environ.get("TINKERKIT_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "tinkerkit"
