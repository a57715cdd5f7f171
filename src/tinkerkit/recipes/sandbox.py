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

The child side (namespaces, mounts, limits, privilege drop) is ``sandbox_child.py``, a
stdlib-only script the parent runs with ``python -I -S``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tinkerkit.recipes.sandbox_child import (
    _HARNESS_FILE,
    _SOLUTION_FILE,
)
from tinkerkit.recipes.sandbox_process import (
    _capture,
    _drain,
    _kill_group,
    _kill_uid,
    _remove_tree,
)

__all__ = ["SandboxError", "SandboxResult", "run_python"]

# Run as a script by the parent; it imports only the standard library.
_CHILD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")

# Throw-away uids for runs started as root: high enough that no account (nor the usual
# /etc/subuid ranges) uses them, wide enough that concurrent runs practically never share
# one — sharing would let one run's fork bomb eat the other's RLIMIT_NPROC.
UID_BASE = 1_700_000_000
UID_SPAN = 1 << 24


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
            [sys.executable, "-I", "-S", _CHILD_SCRIPT, json.dumps(config)],
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
