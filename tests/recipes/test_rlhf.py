"""The three-stage RLHF pipeline end to end on mock: each stage moves its metric; every
stage's input is validated before anything trains.

The end-to-end tests need torch: stage 2's reward model trains with the Bradley-Terry
custom loss (``forward_backward_custom``), which runs on torch; without it they skip
(``pytest.importorskip("torch")`` in each), and the validation test still runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import tinkerkit as tk
from tinkerkit.errors import DataError
from tinkerkit.recipes import RewardModel, RLHFConfig, rlhf

GOOD, BAD = "Sure, happy to help!", "No."


def _config(out_dir, **kw):
    topics = [f"task {i}" for i in range(16)]
    base = dict(
        sft_data=[
            {
                "messages": [
                    {"role": "user", "content": f"Help me with {t}."},
                    {"role": "assistant", "content": GOOD if i % 2 else BAD},
                ]
            }
            for i, t in enumerate(topics)
        ],
        preference_data=[
            {"prompt": f"Help me with {t}.", "chosen": GOOD, "rejected": BAD} for t in topics
        ],
        prompts=[f"Help me with {t}." for t in topics],
        out_dir=out_dir,
        sft_epochs=5,
        sft_batch_size=8,
        sft_learning_rate=5e-3,
        reward_epochs=3,
        reward_batch_size=4,
        reward_learning_rate=5e-3,
        reward_eval_split=0.25,
        rl_steps=8,
        rl_batch_size=4,
        group_size=8,
        rl_learning_rate=1e-2,
        max_tokens=12,
        progress=False,
    )
    base.update(kw)
    return RLHFConfig(**base)


def test_rlhf_pipeline_end_to_end(tmp_path):
    pytest.importorskip("torch")
    service = tk.connect("mock")
    result = rlhf(_config(tmp_path / "rlhf"), service=service)
    # Stage 2: the reward model ranks held-out pairs correctly.
    assert result.reward_evals[0]["eval_accuracy"] < 1.0
    assert result.reward_evals[-1]["eval_accuracy"] == 1.0
    # It scores the chosen answer above the rejected one, as a plain reward function.
    rm = RewardModel(service.create_sampling_client(model_path=result.reward_model_path).result())
    good, bad = rm.score_many([("Help me with anything.", GOOD), ("Help me with anything.", BAD)])
    assert good > bad
    # Stage 3: the policy's reward-model score rises.
    rewards = result.rl_rewards
    assert len(rewards) == 8
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 5.0
    # Each stage kept its own checkpoints; RL started from the SFT weights.
    for stage in ("sft", "reward", "rl"):
        last = json.loads(
            (tmp_path / "rlhf" / stage / "checkpoints.jsonl").read_text().splitlines()[-1]
        )
        assert last["name"] == "final"
    rl_run = json.loads((tmp_path / "rlhf" / "rl" / "run.json").read_text())
    assert rl_run["identity"]["init_state"] == result.sft_state_path


def test_rlhf_skips_finished_stages(tmp_path):
    pytest.importorskip("torch")
    service = tk.connect("mock")
    first = rlhf(_config(tmp_path / "rlhf", rl_steps=2), service=service)
    again = rlhf(_config(tmp_path / "rlhf", rl_steps=2), service=service)
    assert again.sft_state_path == first.sft_state_path
    assert again.reward_model_path == first.reward_model_path
    assert again.policy_sampler_path == first.policy_sampler_path


def _home_runs():
    root = Path(os.environ["TINKERKIT_HOME"]) / "runs"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_every_stage_input_is_validated_before_stage_1_trains(tmp_path):
    bad_prompts = tmp_path / "prompts.jsonl"
    bad_prompts.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"answer": 1}) + "\n")
    bad_pairs = tmp_path / "pairs.jsonl"
    bad_pairs.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    service = tk.connect("mock")
    cases = [
        (dict(prompts=bad_prompts), DataError, r"prompts\.jsonl:2"),
        (dict(preference_data=bad_pairs), DataError, r"pairs\.jsonl:1: field 'rejected'"),
        (dict(rl_steps=0), ValueError, r"RLHFConfig\.rl_steps must be greater than or equal"),
        (dict(reward_eval_split=1.5), ValueError, r"RLHFConfig\.reward_eval_split must be less"),
    ]
    for change, error, message in cases:
        with pytest.raises(error, match=message):
            rlhf(_config(tmp_path / "rlhf", **change), service=service)
        assert not (tmp_path / "rlhf").exists() and _home_runs() == []
