"""Every example in examples/ runs offline, start to finish, and shows what it claims.

The examples are the guide, corrected; each prints its own figure (a loss that falls, a
reward or accuracy that rises, answers that come out right). Each is checked here
against what its docstring promises, read from what it printed, so an example that
still runs but no longer learns fails. Every example needs a check: a new one without
is a failure, not a silent pass. (The examples are run once each, as before: parsing
their output adds nothing measurable.)

``dpo`` and ``rlhf`` need torch (DPO and the Bradley-Terry reward model are custom
losses, run on torch through ``forward_backward_custom``): they skip without it.
"""

from __future__ import annotations

import re
import runpy
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
NUMBER = r"(-?\d+(?:\.\d+)?)"


def _pair(out: str, pattern: str) -> tuple[float, float]:
    """The two numbers ``pattern`` (with two groups) finds in ``out``: before, after."""
    match = re.search(pattern, out)
    assert match, f"no {pattern!r} in the output:\n{out}"
    return float(match.group(1)), float(match.group(2))


def _dpo(out: str) -> None:
    acc = _pair(out, rf"accuracy {NUMBER} → {NUMBER}")
    margin = _pair(out, rf"margin {NUMBER} → {NUMBER}")
    assert acc[1] > acc[0] and acc[1] >= 0.75, acc  # held-out pairs come out right
    assert margin[1] > margin[0] and margin[1] > 0, margin


def _evaluator(out: str) -> None:
    scores = re.findall(rf"expected\s+{NUMBER}\s+scored {NUMBER}", out)
    assert len(scores) == 3, out
    for expected, scored in scores:  # the judge scores its training codes as taught
        assert abs(float(expected) - float(scored)) <= 10, (expected, scored)
    assert "unparseable replies: 0" in out


def _multi_agent(out: str) -> None:
    first, last = _pair(out, rf"first 5 iterations {NUMBER}, last 5 {NUMBER}")
    assert last >= first + 0.4 and last >= 0.7, (first, last)  # it learns to beat the opponent


def _prompt_distillation(out: str) -> None:
    match = _pair(out, rf"student matches teacher {NUMBER}% → {NUMBER}%")
    logprob = _pair(out, rf"teacher's answers {NUMBER} → {NUMBER}")
    # held-out inputs: without the system prompt, the student answers as the teacher with it
    assert match[0] == 0 and match[1] >= 75, match
    assert logprob[1] > logprob[0] + 3.0, logprob


def _quickstart(out: str) -> None:
    losses = {int(e): float(v) for e, v in re.findall(rf"epoch\s+(\d+)\s+loss\s+{NUMBER}", out)}
    assert sorted(losses) == [0, 10, 20, 29], out
    assert losses[29] < losses[0] / 10, losses  # the loss falls
    sample = re.search(r"^sample: (.*)$", out, re.M)
    assert sample and "Python is a programming language" in sample.group(1), out


def _rl_reward_rises(minimum: float) -> Callable[[str], None]:
    def check(out: str) -> None:
        first, last = _pair(out, rf"first 5 steps {NUMBER} -> last 5 steps {NUMBER}")
        assert last > first and last >= minimum, (first, last)
        assert re.search(r"^step\s+\d+ ", out, re.M), "the transcripts are shown"

    return check


def _rlhf(out: str) -> None:
    acc = _pair(out, rf"held-out accuracy: {NUMBER} → {NUMBER}")
    score = _pair(out, rf"RL reward-model score: {NUMBER} → {NUMBER}")
    assert acc[1] > acc[0] and acc[1] >= 0.75, acc  # the reward model learned the pairs
    assert score[1] > score[0], score  # RL raised the reward model's score
    assert re.search(r"^policy: tinker://\S+/sampler_weights/final$", out, re.M), out


def _sft(out: str) -> None:
    final = re.search(rf"final loss {NUMBER}", out)
    assert final and float(final.group(1)) < 0.1, out
    for word, french in [("cat", "chat"), ("bread", "pain"), ("tree", "arbre")]:
        assert f"{word} → {french}\n" in out, out  # the trained model translates
    assert "⟦chat<|im_end|>⟧" in out, "show_datum marks the trained tokens"
    hand = _pair(out, rf"hand-written loop: loss {NUMBER} → {NUMBER}")
    assert hand[1] < hand[0] / 5, hand


def _vl_classifier(out: str) -> None:
    before, after = _pair(out, rf"held-out accuracy {NUMBER} → {NUMBER}")
    assert after >= 0.9 and after > before, (before, after)  # it names unseen pictures


CHECKS: dict[str, Callable[[str], None]] = {
    "dpo": _dpo,
    "evaluator": _evaluator,
    "multi_agent": _multi_agent,
    "prompt_distillation": _prompt_distillation,
    "quickstart": _quickstart,
    "rl_letter_a": _rl_reward_rises(0.9),  # "nearly all a's"
    "rl_math": _rl_reward_rises(0.0),  # it learns to answer with a digit, not to add
    "rlhf": _rlhf,
    "sft": _sft,
    "vl_classifier": _vl_classifier,
}
NEEDS_TORCH = {"dpo", "rlhf"}  # custom losses (DPO, Bradley-Terry) run on torch


def test_every_example_has_a_check():
    assert sorted(CHECKS) == [p.stem for p in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_shows_its_figure(path, monkeypatch, capsys):
    if path.stem in NEEDS_TORCH:
        pytest.importorskip("torch")
    monkeypatch.delenv("TINKERKIT_BACKEND", raising=False)
    monkeypatch.chdir(path.parent)
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), "an example should show the user something"
    check = CHECKS.get(path.stem)
    assert check is not None, f"examples/{path.name} has no check in CHECKS"
    check(out)
