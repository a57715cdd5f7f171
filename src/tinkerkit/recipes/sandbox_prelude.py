"""Runs first in the sandboxed interpreter: the audit hook, the program, then its answers.

The bootstrap (``sandbox_child.py``) exec()s ``python -I -B -c <this file's source>
POLICY WIRE_SOURCE``. This code then

1. reads the program, installs the audit hook (:func:`_audit_hook`), runs the program
   as ``__main__``;
2. when there are tests, sends the judge (``sandbox_judge.py``) the program's names and
   answers its requests (call this, get that attribute, compare these) on two pipes,
   until the judge closes them.

Nothing here decides whether the tests pass: the judge runs them in its own process and
trusts only the plain values it reads back, so the program may rewrite any of this code
(or ``os._exit``) without changing a verdict except to a failure.

This file must only use the standard library: it runs with no site-packages of ours.
"""

from typing import Any


def _tinkerkit_sandbox() -> None:
    import json
    import os
    import sys
    import types

    policy = json.loads(sys.argv[1])
    wire = types.ModuleType("_tinkerkit_sandbox_wire")
    exec(compile(sys.argv[2], "sandbox_wire.py", "exec"), wire.__dict__)
    workdir = os.path.realpath(policy["workdir"])
    with open(policy["solution"], encoding="utf-8") as fh:
        solution = fh.read()
    if policy["audit"]:
        sys.addaudithook(_audit_hook(workdir, _code_roots(workdir), policy["spawn"]))
    path = os.path.join(workdir, policy["solution"])
    sys.argv = [path]
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    code = compile(solution, path, "exec")
    rpc = policy["rpc"]
    del solution, fh, policy
    try:
        exec(code, module.__dict__)
    except SystemExit as exc:
        # A script ending in sys.exit(0) still gets its tests run; other codes propagate.
        if rpc is None or exc.code not in (None, 0):
            raise
    if rpc is not None:
        _Server(wire, rpc[0], rpc[1]).serve(module.__dict__)


def _code_roots(workdir: str) -> tuple[str, ...]:
    """Directories the interpreter imports from: readable, never writable."""
    import os
    import sys

    roots = set()
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.exists(entry):
            roots.update({os.path.abspath(entry), os.path.realpath(entry)})
    roots.discard("/")
    roots.discard(workdir)
    return tuple(sorted(roots))


def _audit_hook(workdir: str, roots: tuple[str, ...], spawn: bool = False) -> Any:
    """The hook, holding its state only in default arguments (no closure cells to edit).

    Rewriting the helpers' ``__code__``/``__defaults__``, tracing and ``gc``'s object walks
    are refused too, so that the program cannot rewrite the hook through Python itself
    (the hook function itself is out of its reach: only the interpreter holds it).
    """
    import os

    def resolve(
        path: Any,
        dir_fd: Any = None,
        _lstat: Any = os.lstat,
        _readlink: Any = os.readlink,
        _getcwd: Any = os.getcwd,
        _isinstance: Any = isinstance,
        _bytes: Any = bytes,
        _int: Any = int,
        _OSError: Any = OSError,
    ) -> Any:
        """``os.path.realpath`` from builtins only (the program could patch posixpath)."""
        if _isinstance(path, _bytes):
            path = path.decode("utf-8", "surrogateescape")
        if not path.startswith("/"):
            base = _getcwd()
            if _isinstance(dir_fd, _int) and dir_fd >= 0:
                base = _readlink(f"/proc/self/fd/{dir_fd}")
            path = base + "/" + path
        todo = path.split("/")[::-1]
        done: list[str] = []
        links = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            here = "/" + "/".join([*done, part])
            try:
                is_link = (_lstat(here).st_mode & 0o170000) == 0o120000
            except _OSError:
                is_link = False
            if not is_link:
                done.append(part)
                continue
            links += 1
            if links > 40:
                return None
            target = _readlink(here)
            if target.startswith("/"):
                done = []
            todo.extend(target.split("/")[::-1])
        return "/" + "/".join(done)

    def allowed(
        path: Any,
        write: bool,
        dir_fd: Any = None,
        _workdir: str = workdir,
        _roots: tuple[str, ...] = roots,
        _resolve: Any = resolve,
        _isinstance: Any = isinstance,
        _str: Any = str,
        _bytes: Any = bytes,
        _int: Any = int,
        _any: Any = any,
        _devices: frozenset[str] = frozenset(
            (
                "/dev/null",
                "/dev/zero",
                "/dev/urandom",
                "/dev/random",
                "/dev/full",
                "/dev/stdin",
                "/dev/stdout",
                "/dev/stderr",
            )
        ),
    ) -> bool:
        """May the program open ``path`` (for writing: only inside the working directory)?"""
        if _isinstance(path, _int):
            return True  # an open descriptor: its opening was checked
        if path is None:
            path = "."
        if not _isinstance(path, _str | _bytes):
            return False
        try:
            raw = path if _isinstance(path, _str) else path.decode("utf-8", "replace")
            if raw in _devices:
                return True
            real = _resolve(path, dir_fd)
        except Exception:
            return False
        if real is None:
            return False
        places = (_workdir,) if write else (_workdir, *_roots)
        return _any(real == p or real.startswith(p + "/") for p in places)

    def hook(
        event: str,
        args: Any,
        _allowed: Any = allowed,
        _resolve: Any = resolve,
        _Error: Any = PermissionError,
        _ImportError: Any = ImportError,
        _isinstance: Any = isinstance,
        _str: Any = str,
        _len: Any = len,
        _any: Any = any,
        _network: frozenset[str] = frozenset(
            (
                "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                "socket.getnameinfo", "socket.gethostbyname_ex",
            )
        ),
        _spawning: frozenset[str] = frozenset(
            (
                "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
                "pty.spawn", "os.fork", "os.forkpty", "os.startfile",
            )
        )
        if not spawn
        else frozenset(),
        _introspection: frozenset[str] = frozenset(
            (
                "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
                "sys.setprofile", "sys._current_frames",
            )
        ),
        _guarded: frozenset[str] = frozenset(("__code__", "__defaults__", "__kwdefaults__")),
        _write: int = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
        # event -> (indexes of path arguments, index of the dir_fd argument or -1)
        _mutations: Any = (
            ("os.remove", (0,), 1), ("os.rmdir", (0,), 1), ("os.mkdir", (0,), 2),
            ("os.chmod", (0,), 2), ("os.chown", (0,), 3), ("os.utime", (0,), 3),
            ("os.truncate", (0,), -1), ("os.mkfifo", (0,), 2), ("os.mknod", (0,), 3),
            ("os.rename", (0, 1), 2), ("os.link", (0, 1), 2), ("os.symlink", (1,), 2),
        ),
    ) -> None:  # fmt: skip
        if event == "open":
            path, mode, flags = args
            write = bool((flags or 0) & _write) or (
                _isinstance(mode, _str) and _any(c in mode for c in "wxa+")
            )
            if not _allowed(path, write):
                where = "write" if write else "read"
                raise _Error(f"sandbox: cannot {where} outside the working directory: {path!r}")
        elif event in ("os.listdir", "os.scandir"):
            if not _allowed(args[0], False):
                raise _Error(f"sandbox: cannot list outside the working directory: {args[0]!r}")
        elif event in _network:
            raise _Error(f"sandbox: network access is disabled ({event})")
        elif event == "socket.__new__" and args[1] != 1:  # AF_UNIX pairs: asyncio's self-pipe
            raise _Error("sandbox: network access is disabled (socket)")
        elif event in _spawning:
            raise _Error(f"sandbox: starting other processes is disabled ({event})")
        elif event == "import" and args[0] in ("ctypes", "_ctypes"):
            # An ImportError, as for a Python built without ctypes: numpy and friends
            # import it optionally and carry on without it.
            raise _ImportError(f"sandbox: ctypes is disabled (import {args[0]})")
        elif event.startswith("ctypes."):
            raise _Error(f"sandbox: ctypes is disabled ({event})")
        elif event in _introspection:
            raise _Error(f"sandbox: {event} is disabled")
        elif event == "object.__setattr__" and _len(args) > 1 and args[1] in _guarded:
            if args[0] is _allowed or args[0] is _resolve:
                raise _Error(f"sandbox: the sandbox's own {args[1]} cannot be changed")
        else:
            for name, indexes, fd_index in _mutations:
                if event != name:
                    continue
                dir_fd = args[fd_index] if 0 <= fd_index < _len(args) else None
                for i in indexes:
                    if not _allowed(args[i], True, dir_fd):
                        raise _Error(
                            "sandbox: cannot change files outside the working directory: "
                            f"{args[i]!r} ({event})"
                        )

    return hook


class _Server:
    """Answers the judge's requests about the program's objects, one at a time."""

    def __init__(self, wire: Any, requests: int, replies: int) -> None:
        self.wire = wire
        self.requests = requests
        self.replies = replies
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}

    def refer(self, obj: Any) -> dict[str, Any]:
        ref = self.ids.get(id(obj))
        if ref is None:
            ref = self.ids[id(obj)] = len(self.objects) + 1
            self.objects[ref] = obj  # kept alive, so that its id() stays its own
        out: dict[str, Any] = {"t": "ref", "id": ref, "type": type(obj).__name__}
        if isinstance(obj, type) and issubclass(obj, BaseException):
            out["exc"] = [c.__name__ for c in obj.__mro__]
        return out

    def resolve(self, data: dict[str, Any]) -> Any:
        ref = data.get("id")
        if data.get("t") != "ref" or type(ref) is not int or ref not in self.objects:
            raise self.wire.WireError(f"no such object: {data!r:.100}")
        return self.objects[ref]

    def serve(self, namespace: dict[str, Any]) -> None:
        import builtins

        exports = {}
        for name, value in list(namespace.items()):
            # Names that shadow builtins stay here: the tests' len() is the real len().
            if isinstance(name, str) and not name.startswith("__") and not hasattr(builtins, name):
                try:
                    exports[name] = self.wire.encode(value, self.refer)
                except Exception:
                    continue
        self.wire.send(self.replies, {"ready": exports})
        while True:
            message = self.wire.receive(self.requests)
            if message is None:
                return
            self.wire.send(self.replies, self.answer(message))

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        seq = message.get("seq")
        try:
            target = self.wire.decode(message["target"], self.resolve)
            args = [self.wire.decode(a, self.resolve) for a in message.get("args", [])]
            kwargs = {k: self.wire.decode(v, self.resolve) for k, v in message.get("kwargs", [])}
            result = _apply(message["op"], message.get("name"), target, args, kwargs)
            mutated = [
                [i, self.wire.encode(a, self.refer)]
                for i, a in [*enumerate(args), *kwargs.items()]
                if type(a) in (list, dict, set, bytearray)
            ]
            return {"seq": seq, "ok": self.wire.encode(result, self.refer), "mutated": mutated}
        except BaseException as exc:  # every failure, SystemExit too, is the judge's to see
            return {"seq": seq, "error": self.describe(exc)}

    def describe(self, exc: BaseException) -> dict[str, Any]:
        import traceback

        try:
            message = str(exc)[:2000]
        except Exception:
            message = "<unprintable>"
        try:
            text = "".join(traceback.format_exception(exc))[-4000:]
        except Exception:
            text = ""
        return {
            "name": type(exc).__name__,
            "bases": [c.__name__ for c in type(exc).__mro__],
            "class": self.refer(type(exc))["id"],
            "message": message,
            "traceback": text,
        }


# fmt: off
_BINARY = frozenset((
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
    "lshift", "rshift", "and", "or", "xor", "divmod",
))
# fmt: on
_UNARY = frozenset(("neg", "pos", "invert", "index", "abs"))
_CONTAINER = frozenset(("getitem", "setitem", "delitem"))
_COMPARE = frozenset(("eq", "ne", "lt", "le", "gt", "ge"))


def _apply(op: str, name: Any, target: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Do one request's operation (``op`` as the judge names it) on ``target``."""
    import operator

    simple: dict[str, Any] = {
        "call": lambda: target(*args, **kwargs),
        "getattr": lambda: getattr(target, name),
        "setattr": lambda: setattr(target, name, args[0]),
        "delattr": lambda: delattr(target, name),
        "isinstance": lambda: isinstance(args[0], target),
        "issubclass": lambda: issubclass(args[0], target),
        "enter": lambda: type(target).__enter__(target),
        "exit": lambda: type(target).__exit__(target, None, None, None),
        "divmod": lambda: divmod(target, args[0]),
        "rdivmod": lambda: divmod(args[0], target),
    }
    if op in simple:
        return simple[op]()
    if op in _BINARY or op in _UNARY or op in _CONTAINER or op in _COMPARE:
        return getattr(operator, f"__{op}__")(target, *args)
    if op.startswith("r") and op[1:] in _BINARY:
        return getattr(operator, f"__{op[1:]}__")(args[0], target)
    builtin_ops: dict[str, Any] = {
        "len": len, "iter": iter, "next": next, "bool": bool, "repr": repr, "str": str,
        "hash": hash, "format": format, "int": int, "float": float, "complex": complex,
        "round": round, "bytes": bytes, "reversed": reversed, "dir": dir,
    }  # fmt: skip
    if op in builtin_ops:
        return builtin_ops[op](target, *args)
    raise ValueError(f"unknown sandbox operation {op!r}")


if __name__ == "__main__":
    _tinkerkit_sandbox()
