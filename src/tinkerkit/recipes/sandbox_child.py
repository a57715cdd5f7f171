"""The child side of ``tinkerkit.recipes.sandbox``, run as a script before the program.

The parent starts ``python -I -S sandbox_child.py CONFIG``: this code runs there as root
(or the calling user), enters the namespaces, sets up the file system and the limits,
drops privileges, forbids new processes (seccomp, through libseccomp) and finally
exec()s a fresh interpreter running ``sandbox_prelude.py`` (the audit hook, then the
program, then its answers to the test judge). See ``sandbox.py`` for what each layer does.

This file imports only the standard library, and ``pyseccomp`` from the path the parent
passes: ``-S`` leaves site-packages off ``sys.path``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

_SOLUTION_FILE = "solution.py"
_EXIT_SETUP_FAILED = 125
_HERE = os.path.dirname(os.path.abspath(__file__))

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
_CLONE_THREAD = 0x00010000
_MOUNT_OPTION_FLAGS = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME,
}


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
            # noexec: nothing the program writes can be run or mapped as code.
            flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            _mount(libc, "tmpfs", "/tmp", "tmpfs", flags, "mode=0755" + size)
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


def _import_libseccomp(path: str | None) -> Any:
    """The ``pyseccomp`` binding of the system's libseccomp, or None where either is missing.

    Imported before the mounts, which may hide the site-packages it lives in.
    """
    if path is None:
        return None
    sys.path.append(os.path.dirname(path))
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError):  # RuntimeError: no libseccomp.so.2
        return None
    return pyseccomp


def _forbid_new_processes(seccomp: Any, protections: list[str]) -> None:
    """A seccomp filter: threads yes, new processes no (so ``memory_mb`` is the total).

    ``clone`` is allowed only with ``CLONE_THREAD``; ``fork``/``vfork`` fail with EPERM,
    ``clone3`` with ENOSYS (its flags lie in memory a filter cannot read; glibc then
    creates threads with ``clone``), ``memfd_create`` with EPERM (no executable memory
    files), and so does every call of another ABI (x32, i386). ``execve`` stays allowed
    (this very process is about to exec the interpreter); the audit hook refuses it to
    the program. Without libseccomp, or on s390 (whose ``clone`` takes its flags second),
    only the audit hook and ``RLIMIT_NPROC`` remain.
    """
    import platform

    if seccomp is None or platform.machine().startswith("s390"):
        return
    eperm = seccomp.ERRNO(errno.EPERM)
    try:
        rules = seccomp.SyscallFilter(seccomp.ALLOW)
        rules.set_attr(seccomp.Attr.ACT_BADARCH, eperm)
        for name in ("fork", "vfork", "memfd_create"):
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) >= 0:  # arm64 has no fork
                rules.add_rule(eperm, name)
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        rules.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
        rules.load()
    except OSError:
        return
    protections.append("no-new-processes")


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
        # Read the files before mounts may hide their directories.
        files = {}
        for name in os.listdir(src_dir):
            with open(os.path.join(src_dir, name), "rb") as fh:
                files[name] = fh.read()
        sources = []
        for name in ("sandbox_prelude.py", "sandbox_wire.py"):
            with open(os.path.join(_HERE, name), encoding="utf-8") as fh:
                sources.append(fh.read())
        seccomp = _import_libseccomp(config["seccomp"])
        if config["namespaces"]:
            _enter_namespaces(libc, protections)
        if config["uid"] is not None and config["unlock"] and "mount-namespace" not in protections:
            # The interpreter lies under a root-only directory and without a mount
            # namespace it cannot be exposed: an unprivileged uid could not even start it.
            config["uid"] = None
        if "pid-namespace" in protections:
            pid = os.fork()
            if pid:
                for fd in [status_fd, *(config["rpc"] or ())]:
                    os.close(fd)
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
        if config["audit_hooks"]:
            protections.append("audit-hooks")
        policy = {
            "workdir": workdir,
            "solution": _SOLUTION_FILE,
            "audit": config["audit_hooks"],
            "spawn": not config["forbid_processes"],
            "rpc": config["rpc"],
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
            # glibc reserves 64 MiB of address space per thread arena: a handful of
            # threads would eat RLIMIT_AS without allocating anything.
            "MALLOC_ARENA_MAX": "2",
        }
        if config["forbid_processes"]:
            _forbid_new_processes(seccomp, protections)
        status = json.dumps({"protections": protections, "workdir": workdir}) + "\n"
        os.write(status_fd, status.encode())
        os.set_inheritable(status_fd, False)  # closed by the exec; open if the exec fails
        prelude, wire = sources
        args = ["-I", "-B", "-X", "utf8", "-c", prelude, json.dumps(policy), wire]
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
