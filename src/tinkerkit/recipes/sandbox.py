"""Run untrusted Python (e.g. model-generated code) in a locked-down subprocess.

``run_python(code, tests=...)`` writes the code to a fresh temporary directory and runs it
in a child interpreter, returning a :class:`SandboxResult` — it never hangs and never
raises for anything the *code* does (only for a broken sandbox set-up).

    result = run_python("print(sum(range(10)))", timeout=2.0)
    result.passed, result.stdout        # (True, '45\\n')

**Tests are judged outside the program.** With ``tests``, the program runs in the sandbox
and the tests run in a *judge* process of their own (``sandbox_judge.py``), which sees the
program's functions and classes as stand-ins: a call is a request over a pipe, answered
with plain values (numbers, strings, bytes, lists, tuples, dicts, sets) or references to
the program's objects. The judge compares those values itself and sends the parent its
verdict on a pipe the program does not have. So nothing the program does in its own
interpreter — patching ``compile``/``exec``, reading frames, ``os._exit(0)``, an object
that claims to equal everything, a ``len`` of its own — can turn failing tests into a
pass; the program's exit status and output count for nothing. The price: the tests
cannot hand the program their own functions (``key=lambda ...``), only data, and
containers passed to the program are copied (changes to a list, dict, set or bytearray
argument are copied back, at the top level only).

How the program is confined, strongest layer first. Every layer that could be put in place
is listed in ``result.protections``; when one is unavailable (not root, no namespaces in
this container) the others still apply and the run goes ahead:

* ``"mount-namespace"``, ``"read-only-fs"``, ``"private-tmp"``: a private mount namespace
  in which every mount is remounted read-only and ``/tmp`` is a fresh, size-limited,
  ``noexec`` tmpfs owned by root. The program's working directory is a directory inside
  it owned by the sandbox user: the *only* writable place. Nothing the program writes
  reaches the disk or can be run as code.
* ``"net-namespace"``: an empty network namespace (only a loopback that is down), so no
  connection can be opened — not even to ``127.0.0.1`` of the host.
* ``"pid-namespace"``, ``"private-proc"``: the program is PID 1 of its own PID namespace;
  when it exits or is killed the kernel kills every process it started, and ``/proc``
  shows only the sandbox's processes.
* ``"ipc-namespace"``: no access to the host's System V IPC objects.
* ``"unprivileged-uid"``: when started as root, the child drops to a throw-away uid/gid
  (one per run, from a range no account uses) with no supplementary groups, so file
  permissions apply to it (root ignores them). Directories on the interpreter's path that
  only root may enter (a Python under ``/root/.pyenv``, say) are exposed read-only inside
  the mount namespace.
* ``"user-namespace"``: when *not* root, a user namespace supplies the privileges the
  namespaces above need (if the kernel allows unprivileged user namespaces).
* ``"no-new-privs"``: set-uid programs (``su``, ``sudo``) cannot raise privileges.
* ``"no-new-processes"``: a seccomp filter, built with libseccomp (the ``pyseccomp``
  binding; absent where ``libseccomp.so.2`` is not installed, and on s390), lets the
  program start threads but no processes (``fork``, ``vfork``, non-thread ``clone``; and
  no ``memfd_create``). One process, so ``memory_mb`` is the program's total.
* ``"rlimits"``: ``RLIMIT_CPU`` (timeout + 1 s), ``RLIMIT_AS``/``RLIMIT_DATA``
  (``memory_mb``), ``RLIMIT_NPROC`` (``max_processes``), ``RLIMIT_FSIZE`` (``disk_mb``),
  ``RLIMIT_NOFILE`` and no core dumps.
* ``"audit-hooks"``: a ``sys.addaudithook`` hook, installed before the program runs (such
  hooks cannot be removed), refuses opening or listing anything outside the working
  directory except the interpreter's own library directories (so reading
  ``/etc/passwd`` fails), writes and renames outside the working directory, sockets other
  than local socket pairs, DNS, starting processes (``subprocess``, ``os.fork``,
  ``os.exec*``, ``os.system``, ``posix_spawn``, ``pty``), ``ctypes`` (an ``ImportError``,
  as where Python lacks it), tracing and ``gc``'s object walks. Its state lives where
  Python code cannot rewrite it.

What this is not: the audit hook works *inside* the program's interpreter, so it stops
accidents and ordinary code, not an attacker who corrupts that interpreter's memory (there
are known ways to crash CPython from pure Python) — it is not a security boundary on its
own. The kernel layers are: with root (or user namespaces) such an attacker is still a
throw-away uid with no network, a read-only file system, no new processes and the
limits above — but the host's world-readable files stay readable to it (the audit hook
is what refuses them), so run untrusted code from strangers in a container or VM of its
own. Without root and without user namespaces only the rlimits, the seccomp filter, the
audit hook, the process-group kill and the parent's timeout remain: enough against
accidents and reward hacking, not against code that sets out to escape. The judge runs
the tests with no confinement of its own: the tests are trusted, the program's answers
are only ever decoded as data.

The parent enforces the wall-clock ``timeout`` itself: on expiry it ``SIGKILL``s the
process groups of the program and the judge and then every process still running under
the run's uid, so nothing outlives the call. Output is captured up to ``output_limit``
bytes per stream (the rest is read and dropped, so a print loop can neither block the
program nor fill memory).

The child side (namespaces, mounts, limits, seccomp, privilege drop) is
``sandbox_child.py``, a script the parent runs with ``python -I -S`` (it imports only
the standard library, and ``pyseccomp`` from the path the parent finds); the
program's interpreter starts with ``sandbox_prelude.py``; values cross in the format of
``sandbox_wire.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
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
from typing import Any

from tinkerkit.errors import SandboxError
from tinkerkit.recipes.sandbox_child import _SOLUTION_FILE
from tinkerkit.recipes.sandbox_process import (
    _capture,
    _drain,
    _Judge,
    _kill_group,
    _kill_uid,
    _locked_ancestors,
    _remove_tree,
)

__all__ = ["SandboxError", "SandboxResult", "run_python"]

# Run as a script by the parent, with ``-S``: it imports the standard library, and the
# libseccomp binding from where it is found here (None: not installed, no seccomp layer).
_CHILD_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
_SECCOMP_BINDING = getattr(importlib.util.find_spec("pyseccomp"), "origin", None)

# Throw-away uids for runs started as root: high enough that no account (nor the usual
# /etc/subuid ranges) uses them, wide enough that concurrent runs practically never share
# one — sharing would let one run's fork bomb eat the other's RLIMIT_NPROC.
UID_BASE = 1_700_000_000
UID_SPAN = 1 << 24


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one sandboxed run.

    Without ``tests``, ``passed`` is True when the program exited with status 0 within its
    limits. With ``tests``, it is the judge's verdict alone: the program loaded, and the
    tests ran to their end within the time limit (a solution calling ``os._exit(0)``
    before the tests does not pass; ``returncode`` is still the program's own).
    ``stdout``/``stderr`` are decoded UTF-8 (invalid bytes replaced), cut to the output
    limit with a ``[... N more bytes truncated]`` note; with tests, the tests' own output
    (and the traceback of a failing test) follows the program's.

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
    """Run ``code`` in a sandbox, then judge it with ``tests`` from outside it.

    Args:
        code: the program, run as ``__main__`` with a fresh temporary directory as cwd.
        tests: optional test code (e.g. ``assert f(2) == 4``), run after ``code`` has
            loaded, by a judge process in which the program's global names stand for its
            objects (see the module docstring); a ``sys.exit(0)`` in ``code`` does not
            skip them. Names that shadow builtins (a ``len`` of the program's) are not
            given to the tests.
        timeout: wall-clock seconds for the whole run, tests included.
        memory_mb: address-space limit of the program (``RLIMIT_AS``); with the
            ``"no-new-processes"`` layer it is the program's total, threads included.
            0 for none.
        stdin: text fed to the program's standard input (default: empty).
        max_processes: threads the program may have at once (``RLIMIT_NPROC``; new
            processes are refused outright).
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
    forbid_processes: bool = True,
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

    src_dir = tempfile.mkdtemp(prefix="tinkerkit-sandbox-")
    # Parent-side ends of every pipe, closed in the finally; the children's ends are
    # closed as soon as the children hold them.
    status_r, status_w = os.pipe()
    child_ends = [status_w]
    parent_ends = [status_r]
    judge: _Judge | None = None
    stdin_file: Any = subprocess.DEVNULL
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(os.path.join(src_dir, _SOLUTION_FILE), "w", encoding="utf-8") as fh:
            fh.write(code)
        if tests is not None:
            judge = _Judge(tests)
            child_ends += judge.program_ends
        if stdin is not None:
            stdin_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
            stdin_file.write(stdin.encode("utf-8"))
            stdin_file.seek(0)
        config = {
            "src_dir": src_dir,
            "status_fd": status_w,
            "rpc": judge.program_ends if judge is not None else None,
            "uid": uid,
            "namespaces": namespaces,
            "audit_hooks": audit_hooks,
            "forbid_processes": forbid_processes,
            "seccomp": _SECCOMP_BINDING if forbid_processes else None,
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
        procs.append(
            subprocess.Popen(
                [sys.executable, "-I", "-S", _CHILD_SCRIPT, json.dumps(config)],
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=tuple(child_ends),
                start_new_session=True,  # its own process group, so one killpg reaches all
                cwd="/",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        )
        pipes = {"status": status_r}
        if judge is not None:
            procs.append(judge.start())
            pipes["verdict"] = judge.verdict_end
        for fd in child_ends:
            os.close(fd)
        child_ends = []
        captured = _capture(procs, pipes, start + timeout, output_limit)
        duration = captured.end - start
        # Kill before reaping: while a leader is an unreaped zombie its pid (= the group
        # id) cannot be reused, so the killpg cannot hit an unrelated group.
        for proc in procs:
            _kill_group(proc.pid)
        if uid is not None:
            _kill_uid(uid)
        returncode = procs[0].wait()
        for proc in procs[1:]:
            proc.wait()
        _drain(captured, deadline=time.monotonic() + 1.0)
    finally:
        for fd in child_ends:
            os.close(fd)
        for proc in procs:
            if proc.returncode is None:
                _kill_group(proc.pid)
                if uid is not None:
                    _kill_uid(uid)
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for fd in parent_ends:
            os.close(fd)
        if judge is not None:
            judge.close()
        if stdin_file is not subprocess.DEVNULL:
            stdin_file.close()
        _remove_tree(src_dir)

    status = _parse_status(bytes(captured.data["status"]))
    if "error" in status:
        raise SandboxError(f"the sandbox could not start the program: {status['error']}")
    if not status and not captured.timed_out:
        tail = bytes(captured.data["err"][-2000:]).decode("utf-8", "replace")
        raise SandboxError(
            f"the sandbox bootstrap exited (status {returncode}) before starting the program:"
            f"\n{tail}"
        )

    timed_out = captured.timed_out
    stdout, stderr = captured.text("out"), captured.text("err")
    if judge is not None:
        # The tests' own output follows the program's; their failure is in stderr.
        stdout += captured.text("test-out")
        stderr += captured.text("test-err")
        # The verdict is the judge's, from data it checked itself; the program's exit
        # status and output count for nothing (os._exit(0) before the tests is a fail).
        passed = _parse_status(bytes(captured.data["verdict"])).get("passed") is True
    else:
        passed = returncode == 0
    killed_reason = _killed_reason(returncode, timed_out, stderr)
    return SandboxResult(
        passed=passed and not timed_out,
        returncode=None if timed_out else returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        killed_reason=killed_reason,
        duration=duration,
        protections=tuple(status.get("protections", ())),
        truncated=captured.truncated,
    )


def _parse_status(raw: bytes) -> dict[str, Any]:
    """The last JSON line the bootstrap wrote to the status pipe ({} if none)."""
    for line in reversed(raw.decode("utf-8", "replace").splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}


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
