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


def check_home_writable() -> Path:
    """``tinkerkit_home()``, created if missing, once a file could be written in it;
    ``HomeNotWritableError`` naming the folder and the fix otherwise.

    Example:
        >>> check_home_writable()
        PosixPath('/home/me/.cache/tinkerkit')
    """
    from tinkerkit.errors import HomeNotWritableError

    home = tinkerkit_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HomeNotWritableError(
            f"TINKERKIT_HOME {str(home)!r} is not writable ({exc.strerror or exc}); the offline "
            "backends keep runs and checkpoints there. Point TINKERKIT_HOME at a writable folder."
        ) from None
    return home
