"""The parent side's process plumbing for ``sandbox``: the judge, output, kill, clean up.

The tests run in a judge process of their own (``sandbox_judge.py``), wired to the
program by two pipes and to the parent by a third. Output is read into bounded buffers
(the rest is drained and dropped, so a print loop can neither block the program nor fill
memory); killing covers the process groups and every process of the run's throw-away
uid, so nothing outlives a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from typing import Any

_JUDGE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_judge.py")


class _Judge:
    """The tests' process: its pipes (to the program, to the parent) and its start.

    ``program_ends`` go to the sandboxed program (it reads requests, writes replies);
    the judge holds the other ends and the write end of the verdict pipe, whose read end
    (``verdict_end``) only the parent has.
    """

    def __init__(self, tests: str) -> None:
        requests_r, self._requests_w = os.pipe()
        self._replies_r, replies_w = os.pipe()
        self.verdict_end, self._verdict_w = os.pipe()
        self.program_ends = [requests_r, replies_w]
        self._judge_ends = [self._requests_w, self._replies_r, self._verdict_w]
        self._tests = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._tests.write(tests.encode("utf-8", "surrogatepass"))
        self._tests.seek(0)
        self._workdir = tempfile.mkdtemp(prefix="tinkerkit-sandbox-tests-")

    def start(self) -> subprocess.Popen[bytes]:
        """Start the judge (a plain interpreter: the tests are trusted, the program not)."""
        config = {
            "requests_fd": self._requests_w,
            "replies_fd": self._replies_r,
            "verdict_fd": self._verdict_w,
        }
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", _JUDGE_SCRIPT, json.dumps(config)],
            stdin=self._tests,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(self._judge_ends),
            start_new_session=True,
            cwd=self._workdir,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self._workdir},
        )
        for fd in self._judge_ends:
            os.close(fd)
        self._judge_ends = []
        return proc

    def close(self) -> None:
        """Close the parent's ends and remove the judge's directory (the program's ends
        are the caller's to close)."""
        for fd in [*self._judge_ends, self.verdict_end]:
            os.close(fd)
        self._judge_ends = []
        self._tests.close()
        _remove_tree(self._workdir)


_CONTROL_LIMIT = 65536  # bytes kept of the bootstrap's status and the judge's verdict


class _Captured:
    """Bounded buffers for the pipes of one run, by name.

    ``out``/``err`` are the program's, ``test-out``/``test-err`` the judge's (the tests'
    prints and tracebacks), ``status`` the bootstrap's and ``verdict`` the judge's.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: dict[str, bytearray] = {}
        self.total: dict[str, int] = {}
        self.timed_out = False
        self.end = 0.0
        self.selector = selectors.DefaultSelector()

    def watch(self, fd: int, name: str) -> None:
        os.set_blocking(fd, False)
        self.data[name] = bytearray()
        self.total[name] = 0
        self.selector.register(fd, selectors.EVENT_READ, name)

    def feed(self, name: str, data: bytes) -> None:
        limit = _CONTROL_LIMIT if name in ("status", "verdict") else self.limit
        buffer = self.data[name]
        self.total[name] += len(data)
        buffer += data[: max(0, limit - len(buffer))]

    def text(self, name: str) -> str:
        """A stream decoded as UTF-8, with a ``[... N more bytes truncated]`` note."""
        head = bytes(self.data.get(name, b""))
        text = head.decode("utf-8", "replace")
        total = self.total.get(name, 0)
        if total > len(head):
            text += f"\n[... {total - len(head)} more bytes truncated]"
        return text

    @property
    def truncated(self) -> bool:
        return any(self.total[n] > self.limit for n in self.total if n not in ("status", "verdict"))

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
    procs: list[subprocess.Popen[bytes]],
    pipes: dict[str, int],
    deadline: float,
    limit: int,
) -> _Captured:
    """Read the pipes until they close, every process exits, or the deadline passes.

    ``procs`` are (program, judge); the first one's stdout/stderr are ``out``/``err``,
    the second one's ``test-out``/``test-err``; ``pipes`` are further read ends by name.
    """
    captured = _Captured(limit)
    for proc, prefix in zip(procs, ("", "test-"), strict=False):
        assert proc.stdout is not None and proc.stderr is not None
        captured.watch(proc.stdout.fileno(), prefix + "out")
        captured.watch(proc.stderr.fileno(), prefix + "err")
    for name, fd in pipes.items():
        captured.watch(fd, name)
    exited_at: float | None = None
    while captured.open:
        now = time.monotonic()
        if now >= deadline:
            captured.timed_out = True
            break
        # Short waits so that an exit is noticed even while a straggler keeps a pipe open.
        captured.pump(min(deadline - now, 0.05))
        if exited_at is None and all(_has_exited(proc.pid) for proc in procs):
            exited_at = time.monotonic()
        elif exited_at is not None and time.monotonic() - exited_at > 0.2:
            break  # leaders gone, pipes still open: stragglers, killed by the caller
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


@lru_cache(maxsize=1)
def _locked_ancestors() -> list[tuple[str, list[str]]]:
    """Directories on the interpreter's paths that other users cannot enter.

    For each, the child entries that must be reachable: the bootstrap shadows such a
    directory with a tmpfs holding read-only bind mounts of just those entries, so the
    unprivileged sandbox user can run this interpreter without seeing anything else.
    """
    paths = {sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix}
    paths |= {p for p in sys.path if os.path.isabs(p) and os.path.exists(p)}
    paths |= {os.path.realpath(p) for p in paths}
    locked: dict[str, set[str]] = {}
    for path in paths:
        parts = [p for p in os.path.abspath(path).split("/") if p]
        current = "/"
        for part in parts:
            try:
                mode = os.stat(current).st_mode
            except OSError:
                break
            if not mode & 0o001 and current != "/":
                locked.setdefault(current, set()).add(part)
                break
            current = os.path.join(current, part)
    return sorted((d, sorted(children)) for d, children in locked.items())
