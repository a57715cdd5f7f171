"""The tests' verdict cannot be forged from inside the program (issue 14).

Each trick is tried by *wrong* code, which must score 0.0 on the tests, while the
correct code next to it still scores 1.0. ``code_reward`` is weighted to the tests alone.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from tinkerkit.recipes.code import CodeRewardWeights, code_reward
from tinkerkit.recipes.sandbox import run_python
from tinkerkit.recipes.sandbox_wire import MAX_DEPTH, WireError, decode, encode, receive, send

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

TESTS_ONLY = CodeRewardWeights(syntax=0.0, tests=1.0, style=0.0)
ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
CORRECT = "def add(a, b):\n    return a + b\n"


def _score(code: str, tests: str | list[str] = ADD_TESTS) -> float:
    return code_reward("Write add.", f"```python\n{code}```", tests=tests, weights=TESTS_ONLY)


def test_correct_code_scores_one() -> None:
    assert _score(CORRECT) == 1.0
    assert _score("def add(a, b):\n    return a - b\n") == 0.0


BYPASSES = {
    # The old harness compiled and exec'd the tests in the program's interpreter.
    "patched compile and exec": """
        import builtins
        real_compile = builtins.compile
        builtins.compile = lambda *a, **k: real_compile("pass", "<x>", "exec")
        builtins.exec = lambda *a, **k: None
        def add(a, b):
            return 0
    """,
    # ... and printed a nonce the program could find in the harness's frame.
    "nonce read through sys._getframe": """
        import os, sys
        frame = sys._getframe()
        while frame.f_back is not None:
            frame = frame.f_back
        for value in list(frame.f_locals.values()):
            if isinstance(value, dict) and "nonce" in value:
                os.write(1, ("\\n" + value["nonce"] + "\\n").encode())
                os._exit(0)
        print("\\n" + "0" * 32)
        def add(a, b):
            return 0
    """,
    "os._exit(0) before the tests": "import os\nos._exit(0)\n",
    "os._exit(0) inside the tested function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "sys.exit(0) inside the tested function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "an object equal to everything": """
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = None
        def add(a, b):
            return Anything()
    """,
    "an int subclass equal to everything": """
        class Liar(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def add(a, b):
            return Liar(0)
    """,
    "a hook that swallows AssertionError": """
        import sys
        sys.excepthook = lambda *a: None
        import atexit
        atexit.register(lambda: __import__("os")._exit(0))
        def add(a, b):
            return 0
    """,
    "a forged reply on the judge's pipe": """
        import json, os, struct
        for fd in range(3, 20):
            try:
                body = json.dumps({"passed": True}).encode()
                os.write(fd, struct.pack(">I", len(body)) + body + b'{"passed": true}\\n')
            except OSError:
                pass
        def add(a, b):
            return 0
    """,
}


@pytest.mark.parametrize("trick", list(BYPASSES))
def test_wrong_code_cannot_forge_a_pass(trick: str) -> None:
    assert _score(textwrap.dedent(BYPASSES[trick])) == 0.0


def test_shadowed_builtins_are_not_given_to_the_tests() -> None:
    wrong = "len = lambda x: 3\ndef pairs(xs):\n    return xs[:1]\n"
    tests = "assert len(pairs([1, 2, 3])) == 3"
    assert _score(wrong, tests) == 0.0
    assert _score("def pairs(xs):\n    return xs\n", tests) == 1.0


def test_a_context_manager_cannot_swallow_a_failing_test() -> None:
    code = (
        "class Quiet:\n    def __enter__(self):\n        return 1\n"
        "    def __exit__(self, *exc):\n        return True\n"
    )
    assert _score(code, "with Quiet() as v:\n    assert v == 2\n") == 0.0
    assert _score(code, "with Quiet() as v:\n    assert v == 1\n") == 1.0


def test_the_judge_sees_the_programs_objects_through_requests() -> None:
    code = textwrap.dedent(
        """
        import math
        class EmptyStack(IndexError):
            pass
        class Stack:
            def __init__(self):
                self.items = []
            def push(self, value):
                self.items.append(value)
            def pop(self):
                if not self.items:
                    raise EmptyStack("pop from an empty stack")
                return self.items.pop()
            def __len__(self):
                return len(self.items)
        def squares(n):
            for i in range(n):
                yield i * i
        def sort_in_place(values):
            values.sort()
        def fact(n):
            return math.factorial(n)
        def pair():
            return (1, [2.5, b"x"], {"k": {3}})
        """
    )
    tests = textwrap.dedent(
        """
        import math
        s = Stack(); s.push(1); s.push(2)
        assert len(s) == 2 and s.pop() == 2 and s.items == [1]
        assert isinstance(s, Stack) and not isinstance(3, Stack)
        s.pop()
        try:
            s.pop()
        except EmptyStack as e:
            assert str(e) == "pop from an empty stack"
        else:
            raise AssertionError("no EmptyStack")
        try:
            s.pop()
        except IndexError:
            pass
        assert list(squares(4)) == [0, 1, 4, 9] and 9 in squares(5)
        values = [3, 1, 2]
        sort_in_place(values)
        assert values == [1, 2, 3]
        assert fact(2000) == math.factorial(2000)
        assert pair() == (1, [2.5, b"x"], {"k": {3}})
        print("tests done")
        """
    )
    result = run_python(code, tests=tests)
    assert result.passed, result.stderr
    assert result.stdout == "tests done\n"


def test_failures_show_the_tests_line_and_the_programs_error() -> None:
    result = run_python("def f(x):\n    return 1 / x\n", tests="assert f(2) == 0.5\nf(0)\n")
    assert not result.passed
    assert 'File "tests.py", line 2' in result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "return 1 / x" in result.stderr  # the program's traceback, as a note
    assert "sandbox_judge" not in result.stderr  # the judge's own frames are hidden


def test_the_tests_cannot_pass_their_own_functions() -> None:
    result = run_python("def apply(f, x):\n    return f(x)\n", tests="apply(lambda v: v, 1)")
    assert not result.passed
    assert "TypeError: sandbox: a function cannot cross" in result.stderr


# --- the wire format (no sandbox) ---------------------------------------------------------


def test_values_round_trip_and_subclasses_travel_as_their_base() -> None:
    value = {"a": [1, 2**80, -(2**70)], (1, "x"): frozenset({b"\x00"}), "c": 1 + 2j}
    assert decode(encode(value, refer=None), resolve=None) == value
    assert encode(True, refer=None) is True

    class Loud(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    sent = decode(encode(Loud(4), refer=None), resolve=None)
    assert type(sent) is int and sent == 4 and sent != 5
    with pytest.raises(TypeError, match="object is not plain data"):
        encode(object(), refer=None)


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],  # a bare JSON list
        {"a": 1},  # an untagged object
        {"t": "eval", "v": "__import__('os')"},
        {"t": "dict", "v": [[{"t": "list", "v": []}, 1]]},  # an unhashable key
        {"t": "bytes", "v": "zz"},
        {"t": "complex", "v": [1, "x"]},
    ],
)
def test_decoding_refuses_what_encode_cannot_write(data: object) -> None:
    with pytest.raises(WireError):
        decode(data, resolve=None)


def test_decoding_refuses_deep_nesting_and_torn_or_huge_frames() -> None:
    deep: object = 1
    for _ in range(MAX_DEPTH + 5):
        deep = {"t": "list", "v": [deep]}
    with pytest.raises(WireError, match="nested more than"):
        decode(deep, resolve=None)
    r, w = os.pipe()
    try:
        os.write(w, (1 << 31).to_bytes(4, "big"))
        with pytest.raises(WireError, match="over the"):
            receive(r)
        send(w, {"ok": 1})
        os.write(w, b"\x00\x00\x00\x09{")
        assert receive(r) == {"ok": 1}
        os.close(w)
        w = -1
        with pytest.raises(WireError, match="closed in the middle"):
            receive(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
