"""The parent side's process plumbing for ``sandbox``: capture output, kill, clean up.

Output is read into bounded buffers (the rest is drained and dropped, so a print loop
can neither block the program nor fill memory); killing covers the process group and
every process of the run's throw-away uid, so nothing outlives a run.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from tinkerkit.recipes.sandbox_child import _TAIL_BYTES


class _Captured:
    """Bounded buffers for the child's stdout, stderr and the bootstrap's status pipe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self.err = bytearray()
        self.out_tail = bytearray()
        self.status = bytearray()
        self.out_total = 0
        self.err_total = 0
        self.timed_out = False
        self.end = 0.0
        self.selector = selectors.DefaultSelector()

    def feed(self, name: str, data: bytes) -> None:
        if name == "status":
            self.status += data[: max(0, 65536 - len(self.status))]
        elif name == "out":
            self.out_total += len(data)
            self.out += data[: max(0, self.limit - len(self.out))]
            self.out_tail = (self.out_tail + data)[-_TAIL_BYTES:]
        else:
            self.err_total += len(data)
            self.err += data[: max(0, self.limit - len(self.err))]

    def pump(self, wait: float) -> None:
        """Read whatever is ready (waiting up to ``wait`` s); unregister pipes at EOF."""
        for key, _ in self.selector.select(timeout=max(0.0, wait)):
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if data:
                self.feed(key.data, data)
            else:
                self.selector.unregister(key.fd)

    @property
    def open(self) -> bool:
        return bool(self.selector.get_map())


def _capture(
    proc: subprocess.Popen[bytes], status_fd: int, deadline: float, limit: int
) -> _Captured:
    """Read the child's pipes until they close, it exits, or the deadline passes."""
    captured = _Captured(limit)
    assert proc.stdout is not None and proc.stderr is not None
    for fd, name in ((proc.stdout.fileno(), "out"), (proc.stderr.fileno(), "err")):
        os.set_blocking(fd, False)
        captured.selector.register(fd, selectors.EVENT_READ, name)
    os.set_blocking(status_fd, False)
    captured.selector.register(status_fd, selectors.EVENT_READ, "status")
    exited_at: float | None = None
    while captured.open:
        now = time.monotonic()
        if now >= deadline:
            captured.timed_out = True
            break
        # Short waits so that an exit is noticed even while a straggler keeps a pipe open.
        captured.pump(min(deadline - now, 0.05))
        if exited_at is None and _has_exited(proc.pid):
            exited_at = time.monotonic()
        elif exited_at is not None and time.monotonic() - exited_at > 0.2:
            break  # leader gone, pipes still open: stragglers, killed by the caller
    captured.end = exited_at if exited_at is not None else time.monotonic()
    return captured


def _drain(captured: _Captured, deadline: float) -> None:
    """After the kill: read what is left in the pipes (bounded in time)."""
    while captured.open and time.monotonic() < deadline:
        captured.pump(min(0.05, deadline - time.monotonic()))
    captured.selector.close()


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it (``WNOWAIT``)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _uid_processes(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        state = re.search(r"^State:\s+(\S)", text, re.M)
        uids = re.search(r"^Uid:\s+(\d+)", text, re.M)
        if uids and int(uids.group(1)) == uid and not (state and state.group(1) in "ZX"):
            pids.append(int(entry))
    return pids


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of the run's private uid (catches ``setsid`` escapees)."""
    for _ in range(50):
        pids = _uid_processes(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    # Still forking faster than we kill: kill(-1) as that uid is atomic in the kernel.
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"],
        user=uid,
        group=uid,
        extra_groups=[],
        check=False,
        timeout=10,
    )


def _remove_tree(path: str) -> None:
    """``rm -rf`` that also copes with directories the program made unreadable."""

    def retry(func: Any, failed: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
            os.chmod(failed, 0o700)
        with contextlib.suppress(FileNotFoundError):
            func(failed)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=retry)
