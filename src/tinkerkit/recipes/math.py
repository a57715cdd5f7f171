"""Math rewards: find the model's final answer, compare it with the expected one.

The guide's math recipe compared strings (``model_answer == expected``), so ``0.75``
against ``3/4``, ``1,000`` against ``1000`` or ``$5`` against ``5`` all scored as wrong.
Here answers are compared as exact fractions when both sides are numbers, and as
normalised text otherwise. The scoring scheme is the guide's: +1 correct, -0.1 wrong.

    extract_answer("so the total is \\\\boxed{\\\\frac{3}{4}}")   # '\\frac{3}{4}'
    answers_match("\\\\frac{3}{4}", "0.75")                     # True
    math_reward("What is 3+4?", "It is 7.", answer="7")         # 1.0
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

CORRECT = 1.0
WRONG = -0.1

_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_HASHES = re.compile(r"####\s*(.+)")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


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


def _normalise(answer: str) -> str:
    text = answer.strip()
    text = _FRAC.sub(r"(\1)/(\2)", text)
    for junk in ("\\left", "\\right", "\\!", "\\,", "\\$", "$", "\\%", "%"):
        text = text.replace(junk, "")
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    text = text.strip().rstrip(".").strip()
    # Thousands separators: only commas between groups of three digits.
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(text.split()).lower()


def _as_number(text: str) -> Fraction | None:
    plain = text.replace(" ", "")
    plain = re.sub(r"^\((-?[\d.]+)\)/\((-?[\d.]+)\)$", r"\1/\2", plain)
    if not re.fullmatch(r"-?(\d+\.?\d*|\.\d+)(/-?(\d+\.?\d*|\.\d+))?", plain):
        return None
    try:
        if "/" in plain:
            top, bottom = plain.split("/")
            return Fraction(top) / Fraction(bottom)
        return Fraction(plain)
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(given: str | None, expected: str | float | int) -> bool:
    """True when two answers are the same number (or the same text, after normalising).

    Handles integers, decimals, fractions (``3/4`` == ``0.75`` == ``\\frac{3}{4}``),
    thousands separators, ``$`` and ``%`` signs, and a trailing period.

    Example:
        >>> answers_match("$1,000.", "1000")
        True
    """
    if given is None:
        return False
    left, right = _normalise(given), _normalise(str(expected))
    a, b = _as_number(left), _as_number(right)
    if a is not None and b is not None:
        return a == b
    return left == right


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
