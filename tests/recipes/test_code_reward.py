"""Code reward: extraction, syntax, style and the guide's 0.3 / 0.5 / 0.2 weighting."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tinkerkit.recipes.code import (
    NO_CODE_PENALTY,
    SYNTAX_ERROR_PENALTY,
    CodeRewardWeights,
    code_reward,
    extract_code,
    style_score,
    syntax_ok,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

GOOD = '''\
Here is my solution. It handles negative numbers too.

```python
def add(a, b):
    """Return the sum of a and b."""
    return a + b
```

Let me know if you need anything else!
'''
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


# --- extraction --------------------------------------------------------------------------


def test_extracts_the_fenced_block_between_prose() -> None:
    code = extract_code(GOOD)
    assert code is not None
    assert code.startswith("def add(a, b):") and "Let me know" not in code


def test_last_python_block_wins_and_tagged_beats_untagged() -> None:
    text = "Draft:\n```python\nx = 1\n```\nFinal:\n```py\nx = 2\n```\nOutput:\n```\n2\n```\n"
    assert extract_code(text) == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"  # untagged when nothing is tagged
    assert extract_code("```js\nlet z = 1\n```") is None  # another language only


def test_tilde_indented_and_unterminated_fences() -> None:
    assert extract_code("~~~python\nprint(1)\n~~~") == "print(1)\n"
    listed = "1. Do this:\n   ```python\n   def f():\n       return 1\n   ```\n"
    assert extract_code(listed) == "def f():\n    return 1\n"
    assert extract_code("Sure:\n```python\ndef f(:\n    ret") == "def f(:\n    ret"


def test_bare_code_heuristic() -> None:
    assert extract_code("def f(x):\n    return x\n") == "def f(x):\n    return x\n"
    assert (
        extract_code("Here you go:\nimport math\nprint(math.pi)") == "import math\nprint(math.pi)\n"
    )
    assert extract_code("I am not sure how to do that.") is None
    assert extract_code("hello") is None  # parses as Python, but is not code
    assert extract_code("") is None


# --- syntax and style ----------------------------------------------------------------------


def test_syntax_ok_compiles_without_running() -> None:
    assert syntax_ok("import os\nos._exit(3)\n")  # not executed
    assert not syntax_ok("def f(:\n    pass\n")
    assert not syntax_ok("return 1\n")  # only the compiler rejects this one
    assert not syntax_ok("x = 1\0")


def test_style_score_is_deterministic_and_bounded() -> None:
    tidy = 'def add(a, b):\n    """Sum."""\n    return a + b\n'
    messy = "from os import *\ndef Add(A,B=[]):\n\ttry:\n\t\treturn A+B    \n\texcept:\n\t\tpass\n"
    assert style_score(tidy) == 1.0
    assert 0.0 <= style_score(messy) < 0.5
    assert style_score(messy) == style_score(messy)
    assert style_score("x = 1  # " + "y" * 200) < 1.0  # long line
    assert style_score("") == 0.0
    assert 0.0 <= style_score("def f(:\n") <= 0.4  # unparsable: only the line checks count


# --- the reward ----------------------------------------------------------------------------


@linux_only
def test_correct_solution_scores_the_maximum() -> None:
    assert code_reward("Write add.", GOOD, tests=TESTS) == pytest.approx(1.0)


@linux_only
def test_failing_tests_score_between_syntax_error_and_max() -> None:
    wrong = GOOD.replace("return a + b", "return a - b")
    score = code_reward("Write add.", wrong, tests=TESTS)
    assert score == pytest.approx(0.3 + 0.2)  # parses and is tidy, tests fail
    assert SYNTAX_ERROR_PENALTY < score < 1.0


def test_syntax_error_scores_the_penalty() -> None:
    broken = "```python\ndef add(a, b)\n    return a + b\n```"
    assert code_reward("Write add.", broken, tests=TESTS) == SYNTAX_ERROR_PENALTY == -0.5


def test_no_code_block_scores_the_penalty() -> None:
    assert code_reward("Write add.", "Sorry, I can't help.", tests=TESTS) == NO_CODE_PENALTY
    assert code_reward("Write add.", "```python\n\n```", tests=TESTS) == NO_CODE_PENALTY
    assert code_reward("p", "no code", no_code_penalty=0.0) == 0.0


@linux_only
def test_test_list_gives_partial_credit_and_fields_pass_through() -> None:
    half = GOOD.replace("return a + b", "return abs(a) + b")
    cases = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]
    # RL calls reward(prompt, completion, **fields): tests comes from the fields, others
    # are ignored.
    fields: dict[str, Any] = {"tests": cases, "answer": "unused"}
    assert code_reward("Write add.", half, **fields) == pytest.approx(0.3 + 0.25 + 0.2)


@linux_only
def test_without_tests_a_clean_run_earns_the_tests_part() -> None:
    assert code_reward("p", GOOD) == pytest.approx(1.0)
    crashing = GOOD.replace("```\n", "\nadd(1)\n```\n", 1)
    assert code_reward("p", crashing) == pytest.approx(0.5)


@linux_only
def test_custom_weights_and_timeouts() -> None:
    weights = CodeRewardWeights(syntax=0.0, tests=1.0, style=0.0)
    assert code_reward("p", GOOD, tests=TESTS, weights=weights) == pytest.approx(1.0)
    as_dict = {"syntax": 0.1, "tests": 0.0, "style": 0.0}
    assert code_reward("p", GOOD, tests=TESTS, weights=as_dict) == pytest.approx(0.1)
    slow = "```python\nwhile True:\n    pass\n```"
    assert code_reward("p", slow, tests="pass", timeout=0.5) == pytest.approx(0.3 + 0.2 * 1.0)
