"""What the sandboxed program may not do (issue 14): read host files, start processes,
use more than ``memory_mb`` in total, or rewrite the audit hook that refuses all that."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinkerkit.recipes import sandbox
from tinkerkit.recipes.sandbox import run_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

try:
    import pyseccomp  # noqa: F401 - loads libseccomp.so.2, as the sandbox's child does
except (ImportError, OSError, RuntimeError):
    SECCOMP = False
else:
    SECCOMP = sys.platform.startswith("linux") and not platform.machine().startswith("s390")


@pytest.fixture
def host_file() -> Iterator[str]:
    """A world-readable file outside the sandbox, in a world-readable directory."""
    folder = tempfile.mkdtemp(prefix="tk-sbx-host-")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "secret.txt")
    with open(path, "w") as fh:
        fh.write("host secret")
    os.chmod(path, 0o644)
    yield path
    sandbox._remove_tree(folder)


_READS = """
import os, pathlib
with open("mine.txt", "w") as fh:
    fh.write("ok")
print("OWN", open("mine.txt").read())
import decimal, json  # the interpreter's own library stays readable
os.symlink({secret!r}, "link")
attempts = {{
    "open": lambda: open({secret!r}).read(),
    "os.open": lambda: os.read(os.open({secret!r}, os.O_RDONLY), 10),
    "pathlib": lambda: pathlib.Path({secret!r}).read_text(),
    "passwd": lambda: open("/etc/passwd").read(),
    "symlink": lambda: open("link").read(),
    "proc-root": lambda: open("/proc/self/root" + {secret!r}).read(),
    "dotdot": lambda: open("../" * 20 + {secret!r}.lstrip("/")).read(),
    "listdir": lambda: os.listdir("/"),
    "scandir": lambda: list(os.scandir(os.path.dirname({secret!r}))),
}}
for name, attempt in attempts.items():
    try:
        print("READ", name, attempt())
    except OSError as exc:
        print("REFUSED", name, type(exc).__name__)
"""


@pytest.mark.parametrize("layers", ["all", "audit-only"])
def test_reading_outside_the_working_directory_is_refused(host_file: str, layers: str) -> None:
    options = {"namespaces": False} if layers == "audit-only" else {}
    result = sandbox._run(_READS.format(secret=host_file), **options)  # type: ignore[arg-type]
    assert "OWN ok" in result.stdout, result.stderr
    assert "READ" not in result.stdout and "host secret" not in result.stdout
    for name in ("open", "os.open", "pathlib", "passwd", "symlink", "proc-root", "dotdot"):
        assert f"REFUSED {name} PermissionError" in result.stdout
    assert "REFUSED listdir PermissionError" in result.stdout
    assert "REFUSED scandir PermissionError" in result.stdout
    assert result.passed


def test_the_audit_hook_cannot_be_rewritten() -> None:
    code = textwrap.dedent(
        """
        import gc, sys
        try:
            open("/etc/passwd")
        except PermissionError as exc:
            tb = exc.__traceback__
            while tb.tb_next:
                tb = tb.tb_next
            helper = tb.tb_frame.f_locals["_allowed"]  # the hook's frame, via a traceback
        for name, attempt in {
            "defaults": lambda: setattr(helper, "__defaults__", (None,) * 20),
            "code": lambda: setattr(helper, "__code__", (lambda *a: True).__code__),
            "gc": lambda: gc.get_objects(),
            "settrace": lambda: sys.settrace(lambda *a: None),
        }.items():
            try:
                attempt()
                print("DONE", name)
            except PermissionError as exc:
                print("REFUSED", name)
        try:
            open("/etc/passwd")
            print("READ")
        except PermissionError:
            print("STILL REFUSED")
        """
    )
    result = run_python(code)
    assert "DONE" not in result.stdout, result.stdout + result.stderr
    for name in ("defaults", "code", "gc", "settrace"):
        assert f"REFUSED {name}" in result.stdout
    assert "STILL REFUSED" in result.stdout


_SPAWNS = """
import os, subprocess, threading
attempts = {
    "fork": os.fork,
    "subprocess": lambda: subprocess.run(["/bin/true"]),
    "system": lambda: os.system("exit 3"),
    "posix_spawn": lambda: os.posix_spawn("/bin/true", ["true"], {}),
    "multiprocessing": lambda: __import__("multiprocessing").Process(target=print).start(),
}
for name, attempt in attempts.items():
    try:
        value = attempt()
        # os.system reports a shell it could not start as a status, not an exception
        started = name != "system" or os.waitstatus_to_exitcode(value) == 3
        print("STARTED" if started else "REFUSED", name, "status" if not started else "")
    except OSError as exc:
        print("REFUSED", name, exc.errno)
results = []
threads = [threading.Thread(target=results.append, args=(i,)) for i in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("THREADS", sorted(results))
"""


def test_forking_is_refused_by_the_hook() -> None:
    result = run_python(_SPAWNS + "import ctypes\n")
    assert "STARTED" not in result.stdout, result.stdout
    for name in ("fork", "subprocess", "system", "posix_spawn", "multiprocessing"):
        assert f"REFUSED {name} None" in result.stdout  # the hook's PermissionError
    assert "THREADS [0, 1, 2, 3]" in result.stdout
    assert "ImportError: sandbox: ctypes is disabled (import ctypes)" in result.stderr


@pytest.mark.skipif(not SECCOMP, reason="needs libseccomp (and not s390)")
def test_forking_is_refused_by_the_kernel_without_the_hook() -> None:
    result = sandbox._run(_SPAWNS, audit_hooks=False)
    assert "no-new-processes" in result.protections
    assert "STARTED" not in result.stdout, result.stdout
    for name in ("fork", "subprocess", "posix_spawn", "multiprocessing"):
        assert f"REFUSED {name} 1" in result.stdout  # EPERM from the seccomp filter
    assert "REFUSED system status" in result.stdout
    assert "THREADS [0, 1, 2, 3]" in result.stdout


def test_without_libseccomp_the_run_goes_ahead_without_the_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A binding that cannot load its library leaves out the layer, as any missing one."""
    fake = tmp_path / "pyseccomp.py"
    fake.write_text('raise RuntimeError("Unable to find libseccomp")\n')
    monkeypatch.setattr(sandbox, "_SECCOMP_BINDING", str(fake))
    result = run_python(_SPAWNS)
    assert "no-new-processes" not in result.protections and "rlimits" in result.protections
    assert "STARTED" not in result.stdout, result.stdout  # the audit hook still refuses
    assert "REFUSED fork None" in result.stdout and "THREADS [0, 1, 2, 3]" in result.stdout


@pytest.mark.skipif(not SECCOMP, reason="needs libseccomp (and not s390)")
def test_memory_limit_is_the_programs_total() -> None:
    """One process (threads share it), so 2 x 150 MB does not fit in 256 MB."""
    code = textwrap.dedent(
        """
        import threading
        kept, refused = [], []
        both_started = threading.Barrier(2)
        def grab():
            both_started.wait()
            try:
                kept.append(bytearray(150 * 1024 * 1024))
            except MemoryError:
                refused.append(1)
        threads = [threading.Thread(target=grab) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("KEPT", len(kept), "REFUSED", len(refused))
        """
    )
    result = sandbox._run(code, memory_mb=256, audit_hooks=False)
    assert "KEPT 1 REFUSED 1" in result.stdout, result.stdout + result.stderr
