"""Prompt distillation, multi-agent competition and evaluators, end to end on mock."""

from __future__ import annotations

import numpy as np
import pytest

import tinkerkit as tk
from tinkerkit.recipes.distill import distill_prompt
from tinkerkit.recipes.evaluator import Evaluator, evaluator_chat, parse_score
from tinkerkit.recipes.multi_agent import DigitDuel, Fixed, Trained, random_digit, train_competition

SYSTEM = "You are a pirate."


def test_prompt_distillation_moves_the_student_to_the_teacher(tmp_path):
    service = tk.connect("mock")
    topics = [f"Tell me about topic number {i}." for i in range(16)]
    # A teacher whose behaviour depends on the system prompt: pirate with it, plain without.
    chats = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": t},
                {"role": "assistant", "content": "Arr matey, to the sea!"},
            ]
        }
        for t in topics[:8]
    ]
    teacher_run = tk.sft.train(
        tk.sft.Config(
            data=chats,
            epochs=40,
            batch_size=8,
            learning_rate=1e-2,
            rank=16,
            log_dir=tmp_path / "teacher",
            progress=False,
            save_each_epoch=False,
        ),
        service=service,
    )
    teacher = service.create_sampling_client(model_path=teacher_run.sampler_path).result()
    report = distill_prompt(
        service,
        SYSTEM,
        topics[:12],
        topics[12:],
        teacher=teacher,
        epochs=30,
        max_tokens=24,
        log_dir=tmp_path / "student",
    )
    # Held-out inputs: the student, without the system prompt, now answers like the teacher with it.
    assert report.eval_before.exact_match == 0.0
    assert report.eval_after.exact_match >= 0.75
    assert report.eval_after.mean_logprob > report.eval_before.mean_logprob + 3.0


def test_win_rate_against_a_fixed_opponent_rises():
    result = train_competition(
        tk.connect("mock"),
        DigitDuel,
        [Trained(), Fixed(random_digit(0))],
        iterations=30,
        games_per_iteration=16,
    )
    wins = result.win_rates[0]
    assert len(wins) == 30
    assert np.mean(wins[-5:]) >= np.mean(wins[:5]) + 0.4
    assert np.mean(wins[-5:]) >= 0.7
    assert result.sampler_paths[0] and result.sampler_paths[1] is None


def test_digit_duel_rules():
    env = DigitDuel()
    env.reset(0)
    env.step(0, "I pick 7!")
    env.step(1, "no idea")
    assert env.done and env.rewards() == [1.0, -1.0]
    env.reset(1)
    env.step(0, "3")
    env.step(1, "3")
    assert env.rewards() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Score: 85\nGood structure.", 85.0),
        ("score=72.5", 72.5),
        ("I'd say 4 out of 5.", 80.0),
        ("Score: 8/10 - nice", 80.0),
        ("Somewhere around 80-90.", 85.0),
        ("150", 100.0),
        ("Score: -20", 0.0),
        ("no idea, sorry", None),
        ("", None),
    ],
)
def test_parse_score(reply, expected):
    assert parse_score(reply, 0, 100) == expected


def test_trained_evaluator_scores_what_it_was_taught(tmp_path):
    service = tk.connect("mock")
    examples = [
        ("def add(a, b):\n    return a + b", 90, "Clear and correct."),
        ("def f(x): return x*2 # todo", 40, "Unclear name."),
        ("while True: pass", 5, "Never ends."),
        ("import os\nprint(os.getcwd())", 60, "Works, no function."),
    ]
    run = tk.sft.train(
        tk.sft.Config(
            data=[evaluator_chat(c, s, r) for c, s, r in examples],
            epochs=80,
            batch_size=4,
            learning_rate=1e-2,
            rank=16,
            log_dir=tmp_path / "judge",
            progress=False,
            save_each_epoch=False,
        ),
        service=service,
    )
    judge = Evaluator(service.create_sampling_client(model_path=run.sampler_path).result())
    scores = judge.score_many([c for c, _, _ in examples])
    assert scores == [float(s) for _, s, _ in examples]
    # An untrained model replies with junk: reported as a failure, not a crash.
    base_judge = Evaluator(
        service.create_sampling_client(base_model="tinkerkit/tiny").result(),
        retries=0,
        max_tokens=4,
    )
    values = base_judge.score_many(["x = 1"])
    assert values == [None] or 0 <= values[0] <= 100
    assert len(base_judge.failures) == (1 if values == [None] else 0)
