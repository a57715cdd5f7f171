"""Reward generated code: does it parse, do its tests pass, is it tidy (the guide's scheme).

The seed guide's "Code Quality" recipe scores a completion as

* ``0.3`` when it parses (an invalid one scores ``-0.5`` outright),
* ``+ 0.5 x`` the share of tests that pass, run in the sandbox of
  :mod:`tinkerkit.recipes.sandbox`,
* ``+ 0.2 x`` a style score in ``[0, 1]``,

so a correct, tidy solution earns ``1.0``. Here the code is first pulled out of the
completion's fenced block (a completion without any code scores ``-0.5`` too), and the
function has the RL reward signature, taking the tests from the prompt's fields::

    prompt = RLPrompt("Write add(a, b).", tests="assert add(2, 3) == 5")
    tk.rl.train(tk.rl.Config(prompts=[prompt], reward=code_reward, ...))
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinkerkit.recipes.sandbox import run_python

__all__ = [
    "NO_CODE_PENALTY",
    "SYNTAX_ERROR_PENALTY",
    "CodeRewardWeights",
    "code_reward",
    "extract_code",
    "style_score",
    "syntax_ok",
]

SYNTAX_ERROR_PENALTY = -0.5  # the guide's score for code that does not parse
# Not in the guide: a completion with no code at all is no better than unparsable code.
NO_CODE_PENALTY = -0.5


@dataclass(frozen=True)
class CodeRewardWeights:
    """Weights of the three parts of :func:`code_reward` (the guide's 0.3 / 0.5 / 0.2).

    Example:
        >>> CodeRewardWeights(tests=0.7, style=0.0).syntax
        0.3
    """

    syntax: float = 0.3
    tests: float = 0.5
    style: float = 0.2


_LANGUAGE_TAGS = {
    "python": {"python", "py", "python3", "py3", "pycon"},
    "javascript": {"javascript", "js"},
    "typescript": {"typescript", "ts"},
    "bash": {"bash", "sh", "shell", "zsh"},
    "cpp": {"cpp", "c++", "cxx"},
}

# A fence: ``` or ~~~ (3 or more), an optional info string, the body, the same fence.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[^\s`]*)[^\n]*\n"
    r"(?P<body>.*?)"
    r"^[ \t]*(?P=fence)[ \t]*$",
    re.M | re.S,
)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n", re.M)
_CODE_START = re.compile(r"^(?:async\s+def|def|class|import|from\s+[\w.]+\s+import|@\w)\b")


def extract_code(completion: str, language: str = "python") -> str | None:
    """The code in a completion: the **last** fenced block for ``language``, else None.

    The last block wins because models that reason before answering write drafts
    first and the final answer last. Prompts should ask for a single block; a trailing
    usage example in a block of its own would be taken for the solution. Order of
    preference:

    1. the last complete block tagged ``language`` (```` ```python ````, ```` ```py ````…);
    2. the last complete untagged block;
    3. an opening fence never closed (a completion cut off by ``max_tokens``): the
       text after it — usually broken code, which then scores as a syntax error;
    4. for Python, unfenced text that parses as code (whole, or from its first
       ``def``/``class``/``import`` line on).

    Example:
        >>> extract_code("Sure:\\n```python\\nprint(1)\\n```\\nDone.")
        'print(1)\\n'
        >>> extract_code("I don't know.") is None
        True
    """
    wanted = _LANGUAGE_TAGS.get(language.lower(), {language.lower()})
    tagged: list[str] = []
    untagged: list[str] = []
    last_end = 0
    for match in _FENCE.finditer(completion):
        body = _dedent(match.group("body"), match.group("indent"))
        tag = match.group("tag").lower().lstrip("{.").rstrip("}")
        if tag in wanted:
            tagged.append(body)
        elif not tag:
            untagged.append(body)
        last_end = match.end()
    if tagged:
        return tagged[-1]
    if untagged:
        return untagged[-1]
    opening = _OPEN_FENCE.search(completion, last_end)
    if opening is not None:
        tag = opening.group(2).lower()
        if not tag or tag in wanted:
            return completion[opening.end() :]
    if language.lower() in {"python", "py"} and last_end == 0:
        return _bare_python(completion)
    return None


def _dedent(body: str, indent: str) -> str:
    """Fences indented inside a list item indent their body too."""
    return textwrap.dedent(body) if indent else body


def _bare_python(text: str) -> str | None:
    stripped = text.strip()
    if not stripped:
        return None
    if _looks_like_code(stripped):
        return stripped + "\n"
    lines = stripped.splitlines()
    for i, line in enumerate(lines):
        if _CODE_START.match(line):
            candidate = "\n".join(lines[i:]) + "\n"
            return candidate if _looks_like_code(candidate) else None
    return None


def _looks_like_code(text: str) -> bool:
    """Parses, and is more than a lone word or number (``"hello"`` parses too)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(
        not isinstance(node, ast.Expr) or isinstance(node.value, ast.Call) for node in tree.body
    )


def syntax_ok(code: str) -> bool:
    """True if ``code`` compiles as Python. Nothing is executed.

    ``compile`` (not only ``ast.parse``) also catches errors the parser lets through,
    such as ``return`` outside a function.

    Example:
        >>> syntax_ok("def f():\\n    return 1\\n"), syntax_ok("def f(:\\n")
        (True, False)
    """
    try:
        compile(code, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        # ValueError: NUL bytes; RecursionError/MemoryError: absurdly nested code.
        return False
    return True


_SNAKE = re.compile(r"^_{0,2}[a-z][a-z0-9_]*$|^__\w+__$|^_+$")
_UPPER = re.compile(r"^_{0,2}[A-Z][A-Z0-9_]*$")
_CAPWORDS = re.compile(r"^_{0,2}[A-Z][A-Za-z0-9]*$")


def style_score(code: str, *, max_line_length: int = 88) -> float:
    """A deterministic tidiness score in ``[0, 1]``: the mean of five checks.

    1. lines no longer than ``max_line_length``;
    2. no tab indentation and no trailing whitespace;
    3. public functions and classes (module level and methods) have docstrings;
    4. PEP 8 names: ``snake_case`` functions/arguments/variables (``UPPER_CASE``
       constants too), ``CapWords`` classes;
    5. no bare ``except:``, ``import *``, mutable default arguments or ``== None``
       (each one found costs a quarter).

    Checks 1-2 are shares of lines, 3-4 shares of definitions/names (1.0 when there are
    none). Code that does not parse gets 0 for checks 3-5. Dependency-free on purpose:
    the same code always gets the same score, with or without linters installed.

    Example:
        >>> style_score('def add(a, b):\\n    "Sum."\\n    return a + b\\n')
        1.0
        >>> style_score("def Add(A,B):\\n\\treturn A+B   \\n")
        0.5
    """
    lines = code.splitlines()
    if not code.strip():
        return 0.0
    lengths = _share(len(line) <= max_line_length for line in lines)
    whitespace = _share(
        line == line.rstrip() and "\t" not in line[: len(line) - len(line.lstrip())]
        for line in lines
    )
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return (lengths + whitespace) / 5
    return (lengths + whitespace + _docstrings(tree) + _naming(tree) + _hygiene(tree)) / 5


def _share(flags: Any) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 1.0


def _docstrings(tree: ast.Module) -> float:
    definitions: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions.append(node)
        if isinstance(node, ast.ClassDef):
            definitions.extend(
                n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    public = [d for d in definitions if not d.name.startswith("_")]
    return _share(ast.get_docstring(d) is not None for d in public)


def _naming(tree: ast.Module) -> float:
    verdicts: list[bool] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            verdicts.append(bool(_CAPWORDS.match(node.name)))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            verdicts.append(bool(_SNAKE.match(node.name)))
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                verdicts.append(bool(_SNAKE.match(arg.arg)))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            verdicts.append(bool(_SNAKE.match(node.id) or _UPPER.match(node.id)))
    return _share(verdicts)


def _hygiene(tree: ast.Module) -> float:
    issues = 0
    for node in ast.walk(tree):
        bare_except = isinstance(node, ast.ExceptHandler) and node.type is None
        star_import = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        if bare_except or star_import:
            issues += 1
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
            issues += sum(isinstance(d, ast.List | ast.Dict | ast.Set) for d in defaults)
        elif isinstance(node, ast.Compare):
            issues += sum(
                isinstance(op, ast.Eq | ast.NotEq)
                and isinstance(right, ast.Constant)
                and right.value is None
                for op, right in zip(node.ops, node.comparators, strict=True)
            )
    return max(0.0, 1.0 - 0.25 * issues)


def code_reward(
    prompt: Any,
    completion: str,
    *,
    tests: str | Sequence[str] | None = None,
    weights: CodeRewardWeights | Mapping[str, float] = CodeRewardWeights(),  # frozen: safe to share
    timeout: float = 5.0,
    memory_mb: int = 256,
    syntax_penalty: float = SYNTAX_ERROR_PENALTY,
    no_code_penalty: float = NO_CODE_PENALTY,
    **_fields: Any,
) -> float:
    """The guide's code-quality reward, usable as ``reward(prompt, completion, **fields)``.

    * no code in the completion (see :func:`extract_code`) → ``no_code_penalty`` (-0.5);
    * code that does not compile → ``syntax_penalty`` (-0.5);
    * otherwise ``syntax + tests x passed + style x style_score(code)`` with the weights
      0.3 / 0.5 / 0.2, so at most 1.0.

    The code runs in the sandbox of :func:`~tinkerkit.recipes.sandbox.run_python`
    (``timeout`` seconds, ``memory_mb`` MiB in total, no network, no processes, no files
    outside a temporary directory); ``tests`` run after it in a judge process of their
    own, where the code's names stand for its objects and only plain values come back,
    so no trick inside the code (patching ``exec``, ``os._exit(0)``, an object equal to
    everything) makes failing tests pass. A string is one test block, passed or failed
    as a whole; a list of strings is scored by the share that pass, one sandbox run per
    item (more signal, more runs). With no tests, the tests part rewards a program that
    runs to completion without an error.

    Raises:
        SandboxError: the sandbox could not start a program (an environment problem; an
            RL loop records the sample's reward as failed rather than scoring it).

    Example:
        >>> good = '```python\\ndef add(a, b):\\n    "Sum."\\n    return a + b\\n```'
        >>> code_reward("Write add.", good, tests="assert add(2, 3) == 5")
        1.0
        >>> code_reward("Write add.", "```python\\ndef add(a, b) return a + b\\n```")
        -0.5
    """
    w = weights if isinstance(weights, CodeRewardWeights) else CodeRewardWeights(**weights)
    code = extract_code(completion)
    if code is None or not code.strip():
        return no_code_penalty
    if not syntax_ok(code):
        return syntax_penalty
    passed = _tests_passed(code, tests, timeout=timeout, memory_mb=memory_mb)
    return w.syntax + w.tests * passed + w.style * style_score(code)


def _tests_passed(
    code: str, tests: str | Sequence[str] | None, *, timeout: float, memory_mb: int
) -> float:
    """Share of test blocks that pass (a single block or none: 0.0 or 1.0)."""
    if tests is None or isinstance(tests, str):
        result = run_python(code, tests=tests, timeout=timeout, memory_mb=memory_mb)
        return 1.0 if result.passed else 0.0
    cases = list(tests)
    if not cases:
        raise ValueError("tests is an empty list: give at least one test, or None")
    passed = sum(
        run_python(code, tests=case, timeout=timeout, memory_mb=memory_mb).passed for case in cases
    )
    return passed / len(cases)
