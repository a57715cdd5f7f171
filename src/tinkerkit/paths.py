"""Where tinkerkit keeps things on disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def holds_something(path: Path) -> bool:
    """Whether ``path`` is taken as an output folder: a file, or a folder with files.

    Example:
        >>> holds_something(Path("new-folder"))
        False
    """
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


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


_OS_ADVICE = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EACCES: "check its permissions, or use another path",
    errno.EPERM: "check its permissions, or use another path",
    errno.EROFS: "write somewhere else",
    errno.EISDIR: "give a file, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: use another path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it or use another path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_os_error(exc: OSError) -> str:
    """One sentence for a failed read or write: the path, what went wrong, what to do.

    Example:
        >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device", "runs/a"))
        'runs/a: No space left on device; free some space or write somewhere else'
    """
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
    advice = _OS_ADVICE.get(exc.errno or 0)
    return f"{where}{reason}" + (f"; {advice}" if advice else "")
