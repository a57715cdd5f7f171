"""Math rewards: find the model's final answer, check it against the expected one.

The guide's math recipe compared strings (``model_answer == expected``), so ``0.75``
against ``3/4``, ``1,000`` against ``1000`` or ``\\{1,2\\}`` against ``\\{2,1\\}`` all
scored as wrong. Here equivalence is math-verify's (the checker behind Hugging Face's
Open R1 rewards): numbers, fractions, LaTeX, sets, intervals, percentages, units and
symbolic expressions. The scoring scheme is the guide's: +1 correct, -0.1 wrong.

    extract_answer("so the total is \\\\boxed{\\\\frac{3}{4}}")   # '\\frac{3}{4}'
    answers_match("\\\\frac{3}{4}", "0.75")                     # True
    math_reward("What is 3+4?", "It is 7.", answer="7")         # 1.0
"""

from __future__ import annotations

import functools
import logging
import math
import re
from typing import Any

CORRECT = 1.0
WRONG = -0.1

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*(.+)")
# "1 000" and "1\,000" are thousands; math-verify would read a product (1·000 = 0).
_THOUSANDS_GAP = re.compile(r"(?<=\d)(?:\s|~|\\[,;: ])+(?=\d{3}(?!\d))")
# Functions that latex2sympy evaluates while parsing: \binom{10000000}{1000000} never ends.
_EAGER = re.compile(r"\\(?:[dt]?binom|choose|Gamma)\b")
_BIG_LITERAL = re.compile(r"\d{5}")
_MAX_CHARS = 1000  # parsing takes ~1 ms per character
_MAX_BITS = 1e6  # numbers sympy computes in a few milliseconds
# A bare word is an answer in words: sympy would read "listen" as l*i*s*t*e*n == "silent".
_WORD = re.compile(r"[^\W\d_]{2,}")


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()
        i += 1
    return None  # unbalanced: the completion was cut off inside the box


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: ``\\boxed{...}``, else ``#### ...``, else the last number.

    Example:
        >>> extract_answer("First 2, then 3. #### 1,234")
        '1,234'
        >>> extract_answer("no digits here") is None
        True
    """
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    hashes = _HASHES.findall(text)
    if hashes:
        return str(hashes[-1]).strip()
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _strip(answer: str) -> str:
    # A "$" in an extracted answer is a currency sign or a stray math delimiter.
    answer = answer.replace("\\$", "").replace("$", "")
    return " ".join(_THOUSANDS_GAP.sub("", answer).split())


@functools.cache
def _math_verify() -> Any:
    # Imported on first use: math-verify brings sympy, which adds ~0.5 s to an import.
    import math_verify

    # Its signal-based timeouts only work in the main thread, and rewards are scored in
    # threads; rl_rewards times every call out instead, so silence the notice about it.
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(
            lambda record: not record.getMessage().startswith("Timeout is disabled")
        )
    return math_verify


def _bits(expr: Any) -> float:
    """A rough upper bound, in bits, on the numbers sympy may build to evaluate ``expr``."""
    from sympy import Float, Function, MatrixBase, Pow, Rational
    from sympy.concrete.expr_with_limits import ExprWithLimits

    if isinstance(expr, MatrixBase):
        return sum(map(_bits, expr), 1.0)
    if isinstance(expr, Rational):
        return float(expr.p.bit_length() + expr.q.bit_length())
    if isinstance(expr, Float):
        return math.log2(abs(float(expr)) + 2.0)
    parts = [_bits(arg) for arg in expr.args]
    if parts and isinstance(expr, (Pow, Function, ExprWithLimits)):
        largest = max(parts)  # x^y, y! and the like grow like 2^(bits of y)
        return largest * 2.0 ** min(largest, 64.0)
    return sum(parts, 1.0)


def _parse(answer: str) -> list[Any]:
    """math-verify's reading of ``answer``; ``[]`` when it is too costly to evaluate.

    Without the signal timeouts, ``9^{9^{9^9}}`` would have sympy multiply integers in C,
    holding the GIL, for longer than any run lasts; such answers are compared as text.
    """
    if len(answer) > _MAX_CHARS or (_EAGER.search(answer) and _BIG_LITERAL.search(answer)):
        return []
    parsed: list[Any] = _math_verify().parse(f"${answer}$", parsing_timeout=None)
    try:
        if parsed and not isinstance(parsed[0], str) and _bits(parsed[0]) > _MAX_BITS:
            return []
    except RecursionError:
        return []
    return parsed


def answers_match(given: str | None, expected: str | float | int) -> bool:
    """True when two answers are mathematically the same (or the same text).

    Equivalence is math-verify's: ``3/4`` == ``0.75`` == ``\\frac{3}{4}``, ``1,000`` ==
    ``1000``, ``\\{1,2\\}`` == ``\\{2,1\\}``, ``2\\sqrt{2}`` == ``\\sqrt{8}``, ``50\\%`` ==
    ``50``, ``10\\text{ cm}`` == ``10``, ``x=3`` == ``3``; ``$`` signs are ignored.

    Example:
        >>> answers_match("$1,000.", "1000")
        True
    """
    if given is None:
        return False
    left, right = _strip(given), _strip(str(expected))
    if left.casefold() == right.casefold():
        return True
    if _WORD.fullmatch(left) and _WORD.fullmatch(right):  # two different words
        return False
    gold, target = _parse(right), _parse(left)
    if not gold or not target:
        return False
    return bool(_math_verify().verify(gold, target, timeout_seconds=None))


def math_reward(
    prompt: Any,
    completion: str,
    *,
    answer: str | float | int | None = None,
    correct: float = CORRECT,
    wrong: float = WRONG,
    **_fields: Any,
) -> float:
    """The guide's math reward: ``correct`` (+1) if the final answer matches, else ``wrong`` (-0.1).

    ``answer`` comes from the prompt's fields (``{"prompt": "...", "answer": "7"}``).

    Example:
        >>> math_reward("What is 3+4?", "3+4 = \\\\boxed{7}", answer="7")
        1.0
    """
    if answer is None:
        raise ValueError(
            "math_reward needs the expected answer: give each prompt an 'answer' field, "
            'e.g. {"prompt": "What is 3+4?", "answer": "7"}'
        )
    return correct if answers_match(extract_answer(completion), answer) else wrong
