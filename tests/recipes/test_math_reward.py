"""Math answer extraction and equivalence, format rewards, and the arithmetic environment."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tinkerkit.recipes import (
    answers_match,
    arithmetic_prompts,
    arithmetic_reward,
    char_fraction,
    combine,
    extract_answer,
    format_reward,
    length_penalty,
    math_reward,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}", "42"),
        ("\\boxed{1} then \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("\\boxed{{a}+{b}}", "{a}+{b}"),
        ("work...\n#### 1,234\n", "1,234"),
        ("2 apples and 3 pears make 5.", "5"),
        ("the answer is -3.5", "-3.5"),
        ("about 3/4 of it", "3/4"),
        ("it costs $1,000,000 today", "1,000,000"),
        ("no digits", None),
        ("cut off \\boxed{12", "12"),  # unbalanced box: fall back to the last number
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# Pairs a string comparison gets wrong and math-verify gets right (the first group kept
# from the hand-written comparison this replaced, which handled numbers only).
EQUIVALENT = [
    ("42", "42"),
    ("42.0", "42"),
    ("3/4", "0.75"),
    ("\\frac{3}{4}", "0.75"),
    ("\\dfrac{3}{4}", "3/4"),
    ("1,234", "1234"),
    ("1 234", "1234"),
    ("1\\,234", "1{,}234"),
    ("$5", "5"),
    ("\\$1,000.", "1000"),
    ("5.", "5"),
    ("-2", "-2.00"),
    ("50%", "50"),
    ("x + 1", "X+1"),
    # LaTeX, sets, intervals, surds, units, equations
    ("1/2", "\\frac{1}{2}"),
    ("0.5", "\\frac12"),
    ("-3.5", "-\\frac{7}{2}"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("2, 3", "3, 2"),
    ("[1,2)", "[1, 2)"),
    ("\\left(1,2\\right)", "(1,2)"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt3}{2}", "\\frac{\\sqrt{3}}{2}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("10\\text{ cm}", "10"),
    ("90^\\circ", "90"),
    ("x=3", "3"),
    ("\\pi", "\\pi"),
    ("2^{10}", "1024"),
    ("10!", "3628800"),
    ("\\text{Monday}", "monday"),
]
DIFFERENT = [
    ("41", "42"),
    ("3", "4"),
    ("2", "-2"),
    ("3/4", "0.7"),
    ("0.333", "1/3"),
    ("1,23", "123"),
    ("1 000", "0"),  # math-verify alone reads "1 000" as 1·000
    ("5", "50%"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("(1,2)", "[1,2]"),
    ("x+1", "x+2"),
    ("\\sqrt{2}", "1.41"),
    ("listen", "silent"),  # words, not products of letters
    (None, "1"),
]


@pytest.mark.parametrize(("given", "expected"), EQUIVALENT)
def test_equivalent_answers_match(given, expected):
    assert answers_match(given, expected)


@pytest.mark.parametrize(("given", "expected"), DIFFERENT)
def test_different_answers_do_not_match(given, expected):
    assert not answers_match(given, expected)


@pytest.mark.parametrize(
    "answer",
    [
        "9^{9^{9^{9}}}",  # sympy would compute an integer of ~10^(3*10^8) digits
        "(10^{9999})^{9999}",
        "(10^{9})!",
        "\\prod_{i=1}^{10^9} i",
        "\\binom{10000000}{1000000}",  # evaluated while parsing
        "\\Gamma(10000000)",
        "1" * 5000,
    ],
)
def test_answers_too_costly_to_evaluate_compare_as_text(answer):
    assert not answers_match(answer, "3")
    assert answers_match(answer, answer)


def test_answers_match_off_the_main_thread():
    # Rewards are scored in threads, where math-verify's signal-based timeouts would fail.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(answers_match, ["1/2", "\\frac{2}{4}", "3", "0.5"], ["0.5"] * 4))
    assert results == [True, True, False, True]


def test_math_verify_is_imported_lazily_and_quietly():
    code = (
        "import sys, tinkerkit.recipes as r; assert 'math_verify' not in sys.modules; "
        "assert r.answers_match('1/2', '0.5')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Timeout is disabled" notice from math-verify


def test_math_reward_uses_the_guides_scheme():
    assert math_reward("What is 3+4?", "3+4 = \\boxed{7}", answer="7") == 1.0
    assert math_reward("What is 3+4?", "It is 8.", answer="7") == -0.1
    assert math_reward("q", "nothing", answer=7) == -0.1
    assert math_reward("q", "0.75", answer="3/4", correct=2.0) == 2.0
    assert math_reward("q", "7", answer="7", source="gsm8k") == 1.0  # other fields ignored
    with pytest.raises(ValueError, match="'answer' field"):
        math_reward("q", "7")


def test_format_and_length_rewards():
    assert format_reward(r"\\boxed\{")("q", "so \\boxed{3}") == 1.0
    assert format_reward(r"\d+", full=True, miss=-1.0)("q", "3 apples") == -1.0
    assert length_penalty(5, per_char=0.1)("q", "1234567") == pytest.approx(-0.2)
    assert length_penalty(5)("q", "123") == 0.0
    assert char_fraction("a")("q", "abca") == 0.5
    assert char_fraction("a")("q", "") == 0.0
    both = combine(char_fraction("a"), length_penalty(2, per_char=0.5), weights=[2.0, 1.0])
    assert both("q", "aab") == pytest.approx(2 * 2 / 3 - 0.5)


def test_arithmetic_prompts_are_seeded_and_carry_answers():
    prompts = arithmetic_prompts(20, seed=3, ops="+-*")
    assert prompts == arithmetic_prompts(20, seed=3, ops="+-*")
    for p in prompts:
        assert p.prompt is not None
        question = p.prompt.removeprefix("What is ").removesuffix("?")
        assert str(eval(question)) == p.fields["answer"]
    with pytest.raises(ValueError, match="ops"):
        arithmetic_prompts(1, ops="/")


def test_arithmetic_reward_steps():
    assert arithmetic_reward("What is 3+4?", "7", answer="7") == 1.0
    assert arithmetic_reward("What is 3+4?", "5", answer="7") == pytest.approx(0.1)
    assert arithmetic_reward("What is 9+4?", "14", answer="13") == pytest.approx(0.3)
    assert arithmetic_reward("What is 3+4?", "xyz", answer="7") == -0.1
