"""Multi-agent rules and evaluators on mock. (Prompt distillation and the multi-agent win
rate are checked end to end by their examples, ``tests/test_examples.py``, which run the
very same computation.)"""

from __future__ import annotations

import pytest

import tinkerkit as tk
from tinkerkit.recipes.evaluator import Evaluator, evaluator_chat, parse_score
from tinkerkit.recipes.multi_agent import DigitDuel


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
