"""The tests' side of a sandboxed run: a process of its own that the program cannot reach.

The parent starts ``python -I sandbox_judge.py CONFIG`` with the tests on stdin. The
judge waits for the sandboxed program to load and send its names, then runs the tests
here, in its own interpreter, where each name of the program is a :class:`Remote`:
calling it, reading its attributes or indexing it asks the program over a pipe and
gets back plain values (numbers, strings, lists, ...; see ``sandbox_wire.py``) or
references to the program's other objects.

So ``assert add(2, 3) == 5`` compares, *here*, the int the program sent for
``add(2, 3)`` with 5: the program cannot patch this interpreter's ``compile``, read a
sentinel, or hand back an object that claims to equal everything (objects of its own
classes are equal only to its other objects, never to the tests' values). The verdict
goes to the parent on a pipe of its own, as ``{"passed": true}`` only when the tests ran
to their end and every exchange with the program was well-formed.

What does not cross: the tests' own functions and objects (a ``key=lambda ...`` passed to
the program is a ``TypeError``); lists, dicts, sets and bytearrays passed to the program
come back updated in place, but only at the top level. A context manager's ``__exit__``
never swallows the tests' exceptions.

This file is stdlib-only (run as a script next to ``sandbox_wire.py``).
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import sys
import traceback
from typing import Any

_TESTS_FILE = "tests.py"
_NOT_SENDABLE = (
    "only plain data (numbers, strings, bytes, lists, tuples, dicts, sets) and the "
    "solution's own objects can be passed to the solution"
)


def _load_wire() -> Any:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_wire.py")
    spec = importlib.util.spec_from_file_location("_tinkerkit_sandbox_wire", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = _load_wire()


class ProgramGone(BaseException):
    """The program ended, or broke the protocol: no test can pass after this.

    A ``BaseException`` so that a test's ``except Exception`` cannot swallow it (the
    verdict is failed regardless, see :attr:`Channel.broken`).
    """


class Channel:
    """The judge's end of the two pipes: one request, one reply, in order."""

    def __init__(self, requests: int, replies: int) -> None:
        self.requests = requests
        self.replies = replies
        self.seq = 0
        self.broken: str | None = None
        self.remotes: dict[int, Remote] = {}
        self.exceptions: dict[int, type[BaseException]] = {}

    def fail(self, why: str) -> ProgramGone:
        self.broken = self.broken or why
        return ProgramGone(self.broken)

    def receive(self) -> dict[str, Any]:
        if self.broken:
            raise ProgramGone(self.broken)
        try:
            message = wire.receive(self.replies)
        except (wire.WireError, OSError) as exc:
            raise self.fail(f"the program sent a malformed reply: {exc}") from None
        if message is None:
            raise self.fail("the program ended (it exited or crashed) before the tests finished")
        if type(message) is not dict:
            raise self.fail("the program sent a malformed reply")
        return message

    def ready(self) -> dict[str, Any]:
        """The program's names, once it has loaded."""
        message = self.receive()
        exports = message.get("ready")
        if type(exports) is not dict or set(message) != {"ready"}:
            raise self.fail("the program sent a malformed greeting")
        return {str(k): self.decode(v) for k, v in exports.items() if type(k) is str}

    def request(
        self,
        op: str,
        target: Remote,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> Any:
        """Ask the program to do ``op`` on ``target``; its result here, or its error raised."""
        if self.broken:
            raise ProgramGone(self.broken)
        kwargs = kwargs or {}
        try:
            message = {
                "seq": self.seq + 1,
                "op": op,
                "name": name,
                "target": self.encode(target),
                "args": [self.encode(a) for a in args],
                "kwargs": [[k, self.encode(v)] for k, v in kwargs.items()],
            }
        except ValueError as exc:
            raise TypeError(f"sandbox: {exc}") from None
        self.seq += 1
        try:
            wire.send(self.requests, message)
        except OSError:
            raise self.fail("the program ended before the tests finished") from None
        reply = self.receive()
        if reply.get("seq") != self.seq:
            raise self.fail("the program answered out of turn")
        if "error" in reply:
            raise self.error(reply["error"])
        if "ok" not in reply:
            raise self.fail("the program sent a malformed reply")
        result = self.decode(reply["ok"])
        self.update(reply.get("mutated"), args, kwargs)
        return result

    def encode(self, value: Any) -> Any:
        def refer(obj: Any) -> dict[str, Any]:
            ref = obj.__dict__.get("_sandbox_class_ref") if isinstance(obj, type) else None
            if isinstance(obj, Remote):
                ref = object.__getattribute__(obj, "_sandbox_ref")
            if ref is None:
                raise TypeError(f"sandbox: a {type(obj).__name__} cannot cross: {_NOT_SENDABLE}")
            return {"t": "ref", "id": ref}

        return wire.encode(value, refer)

    def decode(self, data: Any) -> Any:
        try:
            return wire.decode(data, self.resolve)
        except wire.WireError as exc:
            raise self.fail(f"the program sent a malformed value: {exc}") from None

    def resolve(self, data: dict[str, Any]) -> Any:
        ref = data.get("id")
        if data.get("t") != "ref" or type(ref) is not int:
            raise wire.WireError(f"unknown tag {data.get('t')!r}")
        bases = data.get("exc")
        if bases is not None:
            return self.exception_class(ref, data.get("type"), bases)
        if ref not in self.remotes:
            self.remotes[ref] = Remote(ref, data.get("type"))
        return self.remotes[ref]

    def exception_class(self, ref: Any, name: Any, bases: Any) -> type[BaseException]:
        """A class here for an exception class of the program (one per class there)."""
        if type(ref) is not int or type(name) is not str or type(bases) is not list:
            raise wire.WireError("a malformed exception class")
        if ref in self.exceptions:
            return self.exceptions[ref]
        base: type[BaseException] = Exception
        for base_name in bases:
            candidate = getattr(builtins, base_name, None) if type(base_name) is str else None
            if isinstance(candidate, type) and issubclass(candidate, Exception):
                base = candidate
                break
        if base.__name__ != name or not name.isidentifier():
            attributes = {"__module__": "solution", "_sandbox_class_ref": ref}
            base = type(name if name.isidentifier() else "SolutionError", (base,), attributes)
        self.exceptions[ref] = base
        return base

    def error(self, info: Any) -> BaseException:
        if type(info) is not dict:
            return self.fail("the program sent a malformed error")
        try:
            cls = self.exception_class(info.get("class"), info.get("name"), info.get("bases"))
        except wire.WireError as exc:
            return self.fail(f"the program sent a malformed error: {exc}")
        message = info.get("message")
        raised = cls(message if type(message) is str else "")
        trace = info.get("traceback")
        if type(trace) is str and trace:
            raised.add_note(f"in the solution:\n{trace.rstrip()}")
        return raised

    def update(self, mutated: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Copy the program's changes to the lists/dicts/sets passed to it back here."""
        if type(mutated) is not list:
            raise self.fail("the program sent a malformed reply")
        for item in mutated:
            if type(item) is not list or len(item) != 2:
                raise self.fail("the program sent a malformed reply")
            key, data = item
            if type(key) is int and 0 <= key < len(args):
                original = args[key]
            elif type(key) is str and key in kwargs:
                original = kwargs[key]
            else:
                raise self.fail("the program sent a malformed reply")
            value = self.decode(data)
            if type(original) is not type(value):
                continue
            if isinstance(original, list | bytearray):
                original[:] = value
            elif isinstance(original, dict | set):
                original.clear()
                original.update(value)


CHANNEL: Channel | None = None


def _channel() -> Channel:
    assert CHANNEL is not None, "the judge's channel is not open"
    return CHANNEL


class Remote:
    """One of the program's objects, seen from the tests; every use is a request.

    Example (in a test): ``stack = Stack(); stack.push(1); assert stack.pop() == 1``.
    """

    __slots__ = ("_sandbox_ref", "_sandbox_type")

    def __init__(self, ref: int, type_name: Any) -> None:
        object.__setattr__(self, "_sandbox_ref", ref)
        object.__setattr__(self, "_sandbox_type", type_name if type(type_name) is str else "?")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_sandbox"):
            raise AttributeError(name)
        return _channel().request("getattr", self, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        _channel().request("setattr", self, (value,), name=name)

    def __delattr__(self, name: str) -> None:
        _channel().request("delattr", self, name=name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _channel().request("call", self, args, kwargs)

    def __iter__(self) -> Any:
        return _channel().request("iter", self)

    def __contains__(self, item: Any) -> bool:
        # Iterated here, so that the comparisons are the tests' own.
        return any(element is item or element == item for element in self)

    def __instancecheck__(self, instance: Any) -> bool:
        try:
            return bool(_channel().request("isinstance", self, (instance,)) is True)
        except TypeError:
            return False

    def __subclasscheck__(self, subclass: Any) -> bool:
        try:
            return bool(_channel().request("issubclass", self, (subclass,)) is True)
        except TypeError:
            return False

    def __enter__(self) -> Any:
        return _channel().request("enter", self)

    def __exit__(self, *exc_info: Any) -> None:
        # Whatever the program's __exit__ returns, the tests' exceptions go on.
        _channel().request("exit", self)

    def __repr__(self) -> str:
        text = _channel().request("repr", self)
        return text if type(text) is str else f"<solution {self._sandbox_type} object>"


def _compare(op: str) -> Any:
    def method(self: Remote, other: Any) -> Any:
        # Only the program's own objects are compared by the program: against the tests'
        # values, an "equal to everything" object is just not equal.
        if not isinstance(other, Remote):
            return NotImplemented
        return _channel().request(op, self, (other,))

    return method


def _forward(op: str) -> Any:
    def method(self: Remote, *args: Any) -> Any:
        return _channel().request(op, self, args)

    return method


for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(Remote, f"__{_op}__", _compare(_op))
# fmt: off
_BINARY = (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
    "lshift", "rshift", "and", "or", "xor", "divmod",
)
_OTHER = (
    "getitem", "setitem", "delitem", "len", "next", "bool", "str", "bytes", "hash",
    "format", "int", "float", "complex", "index", "round", "abs", "neg", "pos",
    "invert", "reversed", "dir",
)
# fmt: on
for _op in [*_BINARY, *(f"r{op}" for op in _BINARY), *_OTHER]:
    setattr(Remote, f"__{_op}__", _forward(_op))


def run_tests(tests: str, channel: Channel) -> str | None:
    """Run ``tests`` against the program; None when they pass, else why they did not."""
    try:
        names = channel.ready()
    except ProgramGone as exc:
        print(f"sandbox: {exc}; the tests did not run", file=sys.stderr)
        return str(exc)
    path = _TESTS_FILE
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, **names}
    import linecache

    linecache.cache[path] = (len(tests), None, tests.splitlines(True), path)
    try:
        exec(compile(tests, path, "exec"), namespace)
    except BaseException as exc:  # the tests' failure (SystemExit too), shown as theirs
        _print_failure(exc, path)
        return channel.broken or f"{type(exc).__name__}: {exc}"
    if channel.broken:
        print(f"sandbox: {channel.broken}", file=sys.stderr)
    return channel.broken


def _print_failure(exc: BaseException, path: str) -> None:
    """The traceback of a failed test, showing the tests' lines and not the judge's."""
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if frame.filename == path]
    )
    sys.stderr.write("".join(report.format()))
    sys.stderr.flush()


def main(config: dict[str, Any]) -> None:
    """Run the tests on stdin; write the verdict to ``config["verdict_fd"]``."""
    global CHANNEL
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * wire.MAX_DEPTH))
    tests = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    CHANNEL = Channel(config["requests_fd"], config["replies_fd"])
    failure = run_tests(tests, CHANNEL)
    sys.stdout.flush()
    verdict = json.dumps({"passed": failure is None, "reason": failure}) + "\n"
    os.write(config["verdict_fd"], verdict.encode())


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
