"""Run untrusted Python (e.g. model-generated code) in a locked-down subprocess.

``run_python(code, tests=...)`` writes the code to a fresh temporary directory and runs it
in a child interpreter, returning a :class:`SandboxResult` — it never hangs and never
raises for anything the *code* does (only for a broken sandbox set-up).

    result = run_python("print(sum(range(10)))", timeout=2.0)
    result.passed, result.stdout        # (True, '45\\n')

How the child is confined, strongest layer first. Every layer that could be put in place
is listed in ``result.protections``; when one is unavailable (not root, no namespaces in
this container) the others still apply and the run goes ahead:

* ``"mount-namespace"``, ``"read-only-fs"``, ``"private-tmp"``: a private mount namespace
  in which every mount is remounted read-only and ``/tmp`` is a fresh, size-limited tmpfs
  owned by root. The program's working directory is a directory inside it owned by the
  sandbox user: the *only* writable place. Nothing the program writes reaches the disk.
* ``"net-namespace"``: an empty network namespace (only a loopback that is down), so no
  connection can be opened — not even to ``127.0.0.1`` of the host.
* ``"pid-namespace"``, ``"private-proc"``: the program is PID 1 of its own PID namespace;
  when it exits or is killed the kernel kills every process it started, and ``/proc``
  shows only the sandbox's processes.
* ``"ipc-namespace"``: no access to the host's System V IPC objects.
* ``"unprivileged-uid"``: when started as root, the child drops to a throw-away uid/gid
  (one per run, from a range no account uses) with no supplementary groups. Root ignores
  ``RLIMIT_NPROC`` and file permissions, so without this a fork bomb would not be
  contained. Directories on the interpreter's path that only root may enter (a Python
  under ``/root/.pyenv``, say) are exposed read-only inside the mount namespace.
* ``"user-namespace"``: when *not* root, a user namespace supplies the privileges the
  namespaces above need (if the kernel allows unprivileged user namespaces).
* ``"no-new-privs"``: set-uid programs (``su``, ``sudo``) cannot raise privileges.
* ``"rlimits"``: ``RLIMIT_CPU`` (timeout + 1 s), ``RLIMIT_AS``/``RLIMIT_DATA``
  (``memory_mb``), ``RLIMIT_NPROC`` (``max_processes``), ``RLIMIT_FSIZE`` (``disk_mb``),
  ``RLIMIT_NOFILE`` and no core dumps.
* ``"audit-hooks"``: a ``sys.addaudithook`` hook installed before the program runs refuses
  sockets (connect, bind, send, DNS), writes and renames outside the working directory and,
  when the kernel layers for files or network are missing, starting other programs (they
  would not inherit the hook). It is a second line only: ``ctypes`` can get around it.

The parent enforces the wall-clock ``timeout`` itself: on expiry it ``SIGKILL``s the whole
process group and then every process still running under the run's uid, so nothing
outlives the call. Output is captured up to ``output_limit`` bytes per stream (the rest is
read and dropped, so a print loop can neither block the program nor fill memory).

Without root and without user namespaces only the rlimits, the audit hooks, the process
group kill and the parent's timeout remain: enough against accidents, not against code
that sets out to escape.

This file must only import the standard library: the parent runs it as a script
(``python -I -S sandbox.py``) to set up the child, before any site-packages exist.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn

__all__ = ["SandboxError", "SandboxResult", "run_python"]

# Throw-away uids for runs started as root: high enough that no account (nor the usual
# /etc/subuid ranges) uses them, wide enough that concurrent runs practically never share
# one — sharing would let one run's fork bomb eat the other's RLIMIT_NPROC.
UID_BASE = 1_700_000_000
UID_SPAN = 1 << 24

_SOLUTION_FILE = "solution.py"
_HARNESS_FILE = ".harness.json"
_TAIL_BYTES = 4096  # stdout tail kept beyond output_limit, to find the tests' sentinel
_EXIT_SETUP_FAILED = 125

# Linux constants (see <sched.h>, <sys/mount.h>, <sys/prctl.h>).
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MS_STRICTATIME = 1 << 24
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_MOUNT_OPTION_FLAGS = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME,
}


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not something the sandboxed code did)."""


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one sandboxed run.

    ``passed`` is True when the program exited with status 0 within its limits and, when
    ``tests`` were given, the tests ran to their end (a solution calling ``os._exit(0)``
    before the tests does not pass). ``stdout``/``stderr`` are decoded UTF-8 (invalid
    bytes replaced), cut to the output limit with a ``[... N more bytes truncated]`` note.

    Example:
        >>> r = run_python("print('hi')")
        >>> (r.passed, r.returncode, r.stdout, r.timed_out)
        (True, 0, 'hi\\n', False)
    """

    passed: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_reason: str | None
    duration: float
    protections: tuple[str, ...] = ()
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """Alias of ``passed``."""
        return self.passed


def run_python(
    code: str,
    *,
    tests: str | None = None,
    timeout: float = 5.0,
    memory_mb: int = 256,
    stdin: str | None = None,
    max_processes: int = 32,
    disk_mb: int = 64,
    output_limit: int = 64 * 1024,
) -> SandboxResult:
    """Run ``code`` (then ``tests``, in the same module namespace) in a sandbox.

    Args:
        code: the program, run as ``__main__`` with a fresh temporary directory as cwd.
        tests: optional test code (e.g. ``assert f(2) == 4``) run after ``code`` in the
            same globals; a ``sys.exit(0)`` in ``code`` does not skip them.
        timeout: wall-clock seconds before the whole process tree is killed.
        memory_mb: address-space limit per process (``RLIMIT_AS``); 0 for none.
        stdin: text fed to the program's standard input (default: empty).
        max_processes: processes + threads the run may have at once (``RLIMIT_NPROC``).
        disk_mb: size of the writable tmpfs and the largest file the program may write;
            0 for no limit of its own (a tmpfs then takes up to half the RAM).
        output_limit: bytes of stdout and of stderr kept; the rest is discarded.

    Raises:
        ValueError: for a non-positive timeout or negative limits.
        SandboxError: when the sandbox could not start the program at all.

    Example:
        >>> r = run_python("def sq(x):\\n    return x * x\\n", tests="assert sq(3) == 9")
        >>> r.passed
        True
    """
    return _run(
        code,
        tests=tests,
        timeout=timeout,
        memory_mb=memory_mb,
        stdin=stdin,
        max_processes=max_processes,
        disk_mb=disk_mb,
        output_limit=output_limit,
    )


def _run(
    code: str,
    *,
    tests: str | None = None,
    timeout: float = 5.0,
    memory_mb: int = 256,
    stdin: str | None = None,
    max_processes: int = 32,
    disk_mb: int = 64,
    output_limit: int = 64 * 1024,
    namespaces: bool = True,
    drop_privileges: bool = True,
    audit_hooks: bool = True,
) -> SandboxResult:
    """``run_python`` with switches to turn layers off (for tests of the remaining ones)."""
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    if not timeout > 0 or not math.isfinite(timeout):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    for name, value in (("memory_mb", memory_mb), ("disk_mb", disk_mb)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if max_processes < 1 or output_limit < 0:
        raise ValueError(
            f"need max_processes >= 1 and output_limit >= 0, got {max_processes} and {output_limit}"
        )
    is_root = os.geteuid() == 0
    uid = UID_BASE + secrets.randbelow(UID_SPAN) if is_root and drop_privileges else None
    nonce = secrets.token_hex(16) if tests is not None else None

    src_dir = tempfile.mkdtemp(prefix="tinkerkit-sandbox-")
    status_r, status_w = os.pipe()
    stdin_file: Any = subprocess.DEVNULL
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(os.path.join(src_dir, _SOLUTION_FILE), "w", encoding="utf-8") as fh:
            fh.write(code)
        if tests is not None:
            with open(os.path.join(src_dir, _HARNESS_FILE), "w", encoding="utf-8") as fh:
                json.dump({"tests": tests, "nonce": nonce}, fh)
        if stdin is not None:
            stdin_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
            stdin_file.write(stdin.encode("utf-8"))
            stdin_file.seek(0)
        config = {
            "src_dir": src_dir,
            "status_fd": status_w,
            "uid": uid,
            "namespaces": namespaces,
            "audit_hooks": audit_hooks,
            "has_tests": tests is not None,
            "unlock": _locked_ancestors() if uid is not None else [],
            "timeout": timeout,
            "memory_mb": memory_mb,
            "max_processes": max_processes,
            "disk_mb": disk_mb,
            # The real interpreter, not a virtualenv's symlink to it: the sandbox mounts a
            # fresh /tmp, which would hide a virtualenv that lives there (as CI's may).
            "executable": os.path.realpath(sys.executable),
        }
        start = time.monotonic()
        # No preexec_fn: the child set-up runs in a fresh interpreter (this file as a
        # script), which is safe to start from a multi-threaded parent such as a pool of
        # reward workers, and can do things preexec_fn cannot (fork into a PID namespace).
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), json.dumps(config)],
            stdin=stdin_file,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w,),
            start_new_session=True,  # its own process group, so one killpg reaches all
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        os.close(status_w)
        status_w = -1
        captured = _capture(proc, status_r, start + timeout, output_limit)
        duration = captured.end - start
        # Kill before reaping: while the leader is an unreaped zombie its pid (= the group
        # id) cannot be reused, so the killpg cannot hit an unrelated group.
        _kill_group(proc.pid)
        if uid is not None:
            _kill_uid(uid)
        returncode = proc.wait()
        _drain(captured, deadline=time.monotonic() + 1.0)
    finally:
        if status_w >= 0:
            os.close(status_w)
        if proc is not None and proc.returncode is None:
            _kill_group(proc.pid)
            if uid is not None:
                _kill_uid(uid)
            proc.wait()
        if proc is not None:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        os.close(status_r)
        if stdin_file is not subprocess.DEVNULL:
            stdin_file.close()
        _remove_tree(src_dir)

    status = _parse_status(bytes(captured.status))
    if "error" in status:
        raise SandboxError(f"the sandbox could not start the program: {status['error']}")
    if not status and not captured.timed_out:
        tail = bytes(captured.err[-2000:]).decode("utf-8", "replace")
        raise SandboxError(
            f"the sandbox bootstrap exited (status {returncode}) before starting the program:"
            f"\n{tail}"
        )

    timed_out = captured.timed_out
    out_head, err_head = bytes(captured.out), bytes(captured.err)
    tests_finished = True
    if nonce is not None:
        marker = f"\n{nonce}\n".encode()
        tests_finished = marker in bytes(captured.out_tail)
        out_head = out_head.replace(marker, b"")
        if tests_finished:
            captured.out_total -= len(marker)
    stdout = _decode(out_head, captured.out_total)
    stderr = _decode(err_head, captured.err_total)
    killed_reason = _killed_reason(returncode, timed_out, stderr)
    return SandboxResult(
        passed=returncode == 0 and not timed_out and tests_finished,
        returncode=None if timed_out else returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        killed_reason=killed_reason,
        duration=duration,
        protections=tuple(status.get("protections", ())),
        truncated=captured.out_total > output_limit or captured.err_total > output_limit,
    )


# ---------------------------------------------------------------------------------------
# Parent side: capture, kill, clean up.


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


def _parse_status(raw: bytes) -> dict[str, Any]:
    """The last JSON line the bootstrap wrote to the status pipe ({} if none)."""
    for line in reversed(raw.decode("utf-8", "replace").splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}


def _decode(head: bytes, total: int) -> str:
    text = head.decode("utf-8", "replace")
    if total > len(head):
        text += f"\n[... {total - len(head)} more bytes truncated]"
    return text


def _killed_reason(returncode: int, timed_out: bool, stderr: str) -> str | None:
    """Why the run ended abnormally, in a word or two; None for a normal exit."""
    if timed_out:
        return "timeout"
    if returncode < 0:
        sig = -returncode
        reasons = {
            signal.SIGXCPU: "cpu-limit",
            signal.SIGXFSZ: "file-size-limit",
            signal.SIGKILL: "killed",
            signal.SIGSEGV: "segfault (maybe the memory limit)",
        }
        with contextlib.suppress(ValueError):
            return reasons.get(signal.Signals(sig), f"signal {signal.Signals(sig).name}")
        return f"signal {sig}"
    # An allocation over RLIMIT_AS surfaces as MemoryError, not as a kill.
    if returncode != 0 and re.search(r"^MemoryError\b", stderr, re.M):
        return "memory-limit"
    return None


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


# ---------------------------------------------------------------------------------------
# Child side. The parent runs this file as ``python -I -S sandbox.py CONFIG``; the code
# below runs there as root (or the calling user), sets up namespaces, mounts and limits,
# drops privileges and finally exec()s a new interpreter running _PRELUDE.

# Runs first in the sandboxed interpreter: installs the audit hooks, then runs the
# solution (and the tests) as __main__. It reads and deletes the test harness before the
# solution starts, so the solution cannot see the tests' sentinel on disk.
_PRELUDE = r"""
def _tinkerkit_sandbox():
    import json, os, sys, types
    policy = json.loads(sys.argv[1])
    workdir = os.path.realpath(policy["workdir"])
    harness = None
    if policy["harness"]:
        with open(policy["harness"], encoding="utf-8") as fh:
            harness = json.load(fh)
        os.unlink(policy["harness"])
    with open(policy["solution"], encoding="utf-8") as fh:
        solution = fh.read()
    if policy["audit"]:
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        devices = {"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/zero"}

        def inside(path, dir_fd=None):
            try:
                raw = os.fsdecode(path)
                if dir_fd is not None and not os.path.isabs(raw):
                    raw = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), raw)
                if os.path.abspath(raw) in devices:
                    return True
                real = os.path.realpath(raw)
            except Exception:
                return False
            return real == workdir or real.startswith(workdir + os.sep)

        network = frozenset((
            "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
            "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
            "socket.getnameinfo",
        ))
        # event -> (indexes of path arguments, index of the dir_fd argument or None)
        mutations = {
            "os.remove": ((0,), 1), "os.rmdir": ((0,), 1), "os.mkdir": ((0,), 2),
            "os.chmod": ((0,), 2), "os.chown": ((0,), 3), "os.utime": ((0,), 3),
            "os.truncate": ((0,), None), "os.mkfifo": ((0,), 2), "os.mknod": ((0,), 3),
            "os.rename": ((0, 1), 2), "os.link": ((0, 1), 2), "os.symlink": ((1,), 2),
        }
        spawning = frozenset((
            "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
            "pty.spawn",
        )) if policy["block_spawn"] else frozenset()

        def hook(event, args):
            if event in network:
                raise PermissionError(f"sandbox: network access is disabled ({event})")
            if event == "open":
                path, mode, flags = args
                if isinstance(path, int):
                    return
                writing = bool((flags or 0) & write_flags) or (
                    isinstance(mode, str) and any(c in mode for c in "wxa+"))
                if writing and not inside(path):
                    raise PermissionError(
                        f"sandbox: cannot write outside the working directory: {path!r}")
            elif event in mutations:
                indexes, fd_index = mutations[event]
                dir_fd = args[fd_index] if fd_index is not None and fd_index < len(args) else None
                for i in indexes:
                    if not isinstance(args[i], int) and not inside(args[i], dir_fd):
                        raise PermissionError(
                            f"sandbox: cannot change files outside the working directory: "
                            f"{args[i]!r} ({event})")
            elif event in spawning:
                raise PermissionError(f"sandbox: starting other programs is disabled ({event})")

        sys.addaudithook(hook)
    path = os.path.join(workdir, policy["solution"])
    sys.argv = [path]
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    code = compile(solution, path, "exec")
    del solution, fh, policy
    try:
        exec(code, module.__dict__)
    except SystemExit as exc:
        # A script ending in sys.exit(0) still gets its tests run; other codes propagate.
        if harness is None or exc.code not in (None, 0):
            raise
    if harness is not None:
        import linecache, traceback
        # The tests never touch the disk (the solution must not read them), so show their
        # lines in tracebacks through linecache, which only the traceback module consults.
        tests_path = os.path.join(workdir, "tests.py")
        source = harness["tests"]
        linecache.cache[tests_path] = (len(source), None, source.splitlines(True), tests_path)
        sys.excepthook = traceback.print_exception
        tests = compile(source, tests_path, "exec")
        exec(tests, module.__dict__)
        try:
            sys.stdout.flush()
        except Exception:
            pass
        os.write(1, ("\n" + harness["nonce"] + "\n").encode())

_tinkerkit_sandbox()
"""


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    libc: Any, source: str | None, target: str, fstype: str | None, flags: int, data: str = ""
) -> None:
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _enter_namespaces(libc: Any, protections: list[str]) -> None:
    """unshare() each namespace on its own so that one refused still leaves the others."""
    if os.geteuid() != 0:
        # Without root, a user namespace is what grants the right to make the others.
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(_CLONE_NEWUSER) != 0:
            return
        try:
            with open("/proc/self/setgroups", "w") as fh:
                fh.write("deny")
            with open("/proc/self/uid_map", "w") as fh:
                fh.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as fh:
                fh.write(f"{gid} {gid} 1")
        except OSError:
            return
        protections.append("user-namespace")
    for name, flag in (
        ("mount-namespace", _CLONE_NEWNS),
        ("net-namespace", _CLONE_NEWNET),
        ("ipc-namespace", _CLONE_NEWIPC),
        ("pid-namespace", _CLONE_NEWPID),  # applies to children: the caller forks next
    ):
        if libc.unshare(flag) == 0:
            protections.append(name)


def _unlock(libc: Any, unlock: Sequence[Sequence[Any]]) -> None:
    """Make root-only directories on the interpreter's path passable (see _locked_ancestors)."""
    for directory, children in unlock:
        fds = []
        for child in children:
            with contextlib.suppress(OSError):
                fds.append((child, os.open(os.path.join(directory, child), os.O_PATH)))
        _mount(libc, "tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0711,size=64k")
        for child, fd in fds:
            target = os.path.join(directory, child)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target)
            else:
                open(target, "w").close()
            _mount(libc, f"/proc/self/fd/{fd}", target, None, _MS_BIND | _MS_REC)
            os.close(fd)


def _remount_read_only(libc: Any, keep_writable: str) -> bool:
    """Remount every mount read-only except ``keep_writable``; True if ``/`` succeeded."""
    root_done = False
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for line in lines:
        fields = line.split()
        target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if target == keep_writable:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for option in fields[5].split(","):
            flags |= _MOUNT_OPTION_FLAGS.get(option, 0)  # keep nosuid/nodev/atime as they were
        try:
            _mount(libc, None, target, None, flags)
        except OSError:
            continue
        root_done = root_done or target == "/"
    return root_done


def _setup_filesystem(
    libc: Any, config: dict[str, Any], files: dict[str, bytes], protections: list[str]
) -> str:
    """Mounts and the working directory; returns the working directory."""
    uid = config["uid"]
    src_dir = config["src_dir"]
    workdir = src_dir
    fresh = False  # a new, empty working directory (in the private /tmp) to fill
    if "mount-namespace" in protections:
        _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)  # keep our mounts to ourselves
        if uid is not None and config["unlock"]:
            _unlock(libc, config["unlock"])
        try:
            size = f",size={config['disk_mb']}m" if config["disk_mb"] else ""
            _mount(libc, "tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755" + size)
            workdir = os.path.join("/tmp", os.path.basename(src_dir))
            writable = "/tmp"
            fresh = True
            protections.append("private-tmp")
        except OSError:
            # No tmpfs: keep the real directory writable as a bind mount of its own.
            _mount(libc, src_dir, src_dir, None, _MS_BIND)
            writable = src_dir
        if _remount_read_only(libc, writable):
            protections.append("read-only-fs")
        if os.path.isdir("/dev/shm"):
            # A private, small /dev/shm: multiprocessing's semaphores live there.
            with contextlib.suppress(OSError):
                shm_size = f",size={min(config['disk_mb'], 16)}m" if config["disk_mb"] else ""
                flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
                _mount(libc, "tmpfs", "/dev/shm", "tmpfs", flags, "mode=1777" + shm_size)
        if "pid-namespace" in protections:
            with contextlib.suppress(OSError):
                _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
                protections.append("private-proc")
    if fresh:
        os.mkdir(workdir, 0o700)
        for name, data in files.items():
            with open(os.path.join(workdir, name), "wb") as fh:
                fh.write(data)
    if uid is not None:
        for name in [".", *os.listdir(workdir)]:
            os.chown(os.path.join(workdir, name), uid, uid)
        os.chmod(workdir, 0o700)
    return workdir


def _set_limits(config: dict[str, Any], protections: list[str]) -> None:
    import resource

    def limit(kind: int, value: int) -> None:
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # cannot raise a hard limit, only lower it
        resource.setrlimit(kind, (value, value))

    mib = 1024 * 1024
    cpu = math.ceil(config["timeout"]) + 1
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    # Soft limit sends SIGXCPU; the hard one (a second later) SIGKILL.
    hard = cpu + 1 if cpu_hard == resource.RLIM_INFINITY else min(cpu + 1, cpu_hard)
    resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, hard), hard))
    if config["memory_mb"]:
        limit(resource.RLIMIT_AS, config["memory_mb"] * mib)
        limit(resource.RLIMIT_DATA, config["memory_mb"] * mib)
    if config["disk_mb"]:
        limit(resource.RLIMIT_FSIZE, config["disk_mb"] * mib)
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_NOFILE, 256)
    nproc = config["max_processes"]
    if config["uid"] is None:
        # RLIMIT_NPROC counts all of the real user's processes and threads, not ours alone.
        nproc += _thread_count(os.getuid())
    limit(resource.RLIMIT_NPROC, nproc)
    protections.append("rlimits")


def _thread_count(uid: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                text = fh.read()
        except OSError:
            continue
        uids = re.search(r"^Uid:\s+(\d+)", text, re.M)
        threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
        if uids and threads and int(uids.group(1)) == uid:
            total += int(threads.group(1))
    return total


def _wait_and_exit(pid: int) -> NoReturn:
    """PID-namespace parent: wait for the sandboxed PID 1 and exit the same way."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _bootstrap(config: dict[str, Any]) -> NoReturn:
    status_fd: int = config["status_fd"]
    protections: list[str] = []
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        libc = _libc()
        src_dir = config["src_dir"]
        # Read the files before mounts may hide their directory.
        files = {}
        for name in os.listdir(src_dir):
            with open(os.path.join(src_dir, name), "rb") as fh:
                files[name] = fh.read()
        if config["namespaces"]:
            _enter_namespaces(libc, protections)
        if config["uid"] is not None and config["unlock"] and "mount-namespace" not in protections:
            # The interpreter lies under a root-only directory and without a mount
            # namespace it cannot be exposed: an unprivileged uid could not even start it.
            config["uid"] = None
        if "pid-namespace" in protections:
            pid = os.fork()
            if pid:
                os.close(status_fd)
                _wait_and_exit(pid)
        workdir = _setup_filesystem(libc, config, files, protections)
        _set_limits(config, protections)
        uid = config["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if os.getuid() != uid or os.geteuid() != uid:
                raise OSError(errno.EPERM, "could not switch to the sandbox uid")
            protections.append("unprivileged-uid")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            protections.append("no-new-privs")
        if "pid-namespace" in protections:
            # Die with the bootstrap parent (which the caller kills on timeout); set after
            # the uid switch because a credential change clears it.
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        os.chdir(workdir)
        kernel_isolated = "read-only-fs" in protections and "net-namespace" in protections
        if config["audit_hooks"]:
            protections.append("audit-hooks")
        policy = {
            "workdir": workdir,
            "solution": _SOLUTION_FILE,
            "harness": _HARNESS_FILE if config["has_tests"] else None,
            "audit": config["audit_hooks"],
            "block_spawn": not kernel_isolated,
        }
        bindir = os.path.dirname(config["executable"])
        env = {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            # Thread pools of numeric libraries would blow RLIMIT_AS / RLIMIT_NPROC.
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        status = json.dumps({"protections": protections, "workdir": workdir}) + "\n"
        os.write(status_fd, status.encode())
        os.set_inheritable(status_fd, False)  # closed by the exec; open if the exec fails
        args = ["-I", "-B", "-X", "utf8", "-c", _PRELUDE, json.dumps(policy)]
        os.execve(config["executable"], [config["executable"], *args], env)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            import traceback

            where = traceback.extract_tb(exc.__traceback__)[-1]
            detail = f"{type(exc).__name__}: {exc} (at {where.name}:{where.lineno})"
            message = json.dumps({"error": detail}) + "\n"
            os.write(status_fd, message.encode())
        os._exit(_EXIT_SETUP_FAILED)


if __name__ == "__main__":
    _bootstrap(json.loads(sys.argv[1]))
