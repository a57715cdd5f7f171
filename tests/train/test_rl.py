"""The RL loop: reward rises on mock via the CLI, failing rewards, exact resume, refusals."""

from __future__ import annotations

import json
import logging
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tinker import types

import tinkerkit as tk
from tinkerkit.cli_rl import RewardLoadError, load_reward
from tinkerkit.errors import ConfigMismatchError, DataError
from tinkerkit.recipes import char_fraction, math_reward
from tinkerkit.train.rl import Config, train

REWARD_FILE = """
def letter_a(prompt, completion, **fields):
    return completion.count("a") / len(completion) if completion else 0.0
"""


def _prompts(n=16):
    return [f"Write something #{i}" for i in range(n)]


def _config(tmp_path, **kw):
    base = dict(
        prompts=_prompts(),
        reward=char_fraction("a"),
        group_size=4,
        batch_size=4,
        steps=6,
        learning_rate=1e-2,
        max_tokens=6,
        rank=8,
        log_dir=tmp_path / "run",
        progress=False,
    )
    base.update(kw)
    return Config(**base)


def _rows(log_dir: Path):
    return [json.loads(x) for x in (log_dir / "metrics.jsonl").read_text().splitlines()]


def _steps(log_dir: Path):
    return [r for r in _rows(log_dir) if "reward_mean" in r]


def test_cli_reward_rises_on_mock(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in _prompts()))
    (tmp_path / "rewards.py").write_text(REWARD_FILE)
    out = subprocess.run(
        [
            sys.executable, "-m", "tinkerkit.cli", "rl",
            "--prompts", str(prompts),
            "--reward", f"{tmp_path / 'rewards.py'}:letter_a",
            "--backend", "mock",
            "--group-size", "8", "--batch-size", "4", "--steps", "30",
            "--lr", "1e-2", "--max-tokens", "8", "--temperature", "1.0",
            "--log-dir", str(tmp_path / "run"), "--seed", "0",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rewards = [r["reward_mean"] for r in _steps(tmp_path / "run")]
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last >= 2 * first and last - first >= 0.1, rewards
    entries = [
        json.loads(x) for x in (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()
    ]
    assert entries[-1]["name"] == "final" and entries[-1]["step"] == 30
    assert {"name", "step", "state_path", "sampler_path"} <= set(entries[-1])


def test_reward_loading_errors_are_one_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
    (tmp_path / "rewards.py").write_text(REWARD_FILE + "NOT_A_FUNCTION = 3\n")
    assert load_reward(f"{tmp_path / 'rewards.py'}:letter_a")("p", "aab") == pytest.approx(2 / 3)
    assert load_reward("tinkerkit.recipes.math:math_reward") is math_reward
    for spec, message in [
        (f"{tmp_path / 'rewards.py'}:nope", "has no attribute 'nope'"),
        (f"{tmp_path / 'rewards.py'}:NOT_A_FUNCTION", "not a function"),
        ("no_such_module_xyz:fn", "cannot import module"),
        ("letter_a", "module:function"),
    ]:
        with pytest.raises(RewardLoadError, match=message):
            load_reward(spec)
    out = subprocess.run(
        [sys.executable, "-m", "tinkerkit.cli", "rl", "--prompts", str(prompts),
         "--reward", f"{tmp_path / 'missing.py'}:letter_a", "--backend", "mock",
         "--log-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 1
    assert "error: --reward: no such file" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_metrics_rows_and_transcripts(tmp_path):
    result = train(
        _config(tmp_path, log_samples_every=3, log_samples=2), service=tk.connect("mock")
    )
    steps = _steps(tmp_path / "run")
    assert [r["step"] for r in steps] == list(range(1, 7)) and result.steps == 6
    wanted = {
        "step", "reward_mean", "reward_std", "frac_groups_with_signal", "entropy",
        "tokens_sampled", "sample_time", "train_time", "loss", "lr", "reward_errors",
    }  # fmt: skip
    assert wanted <= set(steps[0])
    assert steps[0]["tokens_sampled"] > 0 and steps[0]["entropy"] > 0
    # One kind of row per file: every metrics row is a step; transcripts have their own.
    assert len(_rows(tmp_path / "run")) == 6 and not any("completion" in r for r in steps)
    transcripts = [
        json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in transcripts] == [3, 3, 6, 6]
    assert set(transcripts[0]) == {"step", "prompt", "completion", "reward"}
    assert result.samples == transcripts and len(result.metrics) == 6


def test_failing_and_hanging_rewards_do_not_stop_the_run(tmp_path, caplog):
    base = char_fraction("a")

    def flaky(prompt, completion, **fields):
        if prompt.endswith("#1"):
            raise RuntimeError("judge unavailable")
        if prompt.endswith("#2"):
            time.sleep(1.5)
        return base(prompt, completion)

    with caplog.at_level(logging.WARNING, logger="tinkerkit.rl"):
        train(
            _config(tmp_path, prompts=_prompts(4), reward=flaky, steps=2, reward_timeout=0.2),
            service=tk.connect("mock"),
        )
    steps = _steps(tmp_path / "run")
    assert len(steps) == 2
    assert [r["reward_errors"] for r in steps] == [8, 8]  # 2 bad prompts x group of 4
    assert "prompt #1 'Write something #1'" in caplog.text and "judge unavailable" in caplog.text
    assert "prompt #2 'Write something #2'" in caplog.text and "timed out" in caplog.text


def test_skip_drops_failed_samples(tmp_path):
    def failing(prompt, completion, **fields):
        raise ValueError("always")

    train(
        _config(tmp_path, reward=failing, steps=1, on_reward_error="skip"),
        service=tk.connect("mock"),
    )
    [row] = _steps(tmp_path / "run")
    assert row["reward_errors"] == 16 and row["datums"] == 0


def _greedy(sampler_path, service):
    sampler = service.create_sampling_client(model_path=sampler_path).result()
    tok = tk.tokenizer_of(sampler)
    prompt = tk.data.chat_prompt_tokens([{"role": "user", "content": "Write something #3"}], tok)
    params = types.SamplingParams(max_tokens=8, temperature=0.0, stop=[])
    return (
        sampler.sample(types.ModelInput.from_ints(prompt), 1, params).result().sequences[0].tokens
    )


def _stop_after(step):
    def callback(row):
        if row.get("step") == step and "reward_mean" in row:
            raise KeyboardInterrupt

    return callback


def test_resume_matches_an_uninterrupted_run(tmp_path):
    service = tk.connect("mock")
    cfg = dict(steps=8, save_every=2, learning_rate=2e-2)
    full = train(_config(tmp_path / "a", **cfg), service=service)
    partial = _config(tmp_path / "b", **cfg, callbacks=(_stop_after(5),))
    with pytest.raises(KeyboardInterrupt):
        train(partial, service=service)
    resumed = train(_config(tmp_path / "b", **cfg, resume=True), service=service)
    assert resumed.steps == full.steps == 8
    assert _greedy(resumed.sampler_path, service) == _greedy(full.sampler_path, service)
    assert [r["reward_mean"] for r in _steps(tmp_path / "b" / "run")] == full.rewards


def test_resume_refuses_changed_settings(tmp_path):
    service = tk.connect("mock")
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, save_every=1, callbacks=(_stop_after(2),)), service=service)
    with pytest.raises(ConfigMismatchError, match="group_size"):
        train(_config(tmp_path, save_every=1, resume=True, group_size=8), service=service)


def test_kl_ppo_and_recomputed_logprobs_are_logged(tmp_path):
    service = tk.connect("mock")
    train(
        _config(
            tmp_path,
            reward=char_fraction(string.ascii_letters),  # random bytes: some letters, some not
            steps=2,
            loss="ppo",
            kl_coef=0.05,
            recompute_logprobs=True,
        ),
        service=service,
    )
    rows = [r for r in _steps(tmp_path / "run") if r["datums"]]
    assert rows, "expected at least one step with signal"
    assert all("kl" in r for r in rows)
    # mock samples with the trainer's own numbers: the drift is float noise
    assert all(r["logprob_diff_max"] < 1e-3 for r in rows)


def test_async_reward_and_epochs(tmp_path):
    async def reward(prompt, completion, **fields):
        return completion.count("a") / max(len(completion), 1)

    result = train(
        _config(tmp_path, prompts=_prompts(6), reward=reward, steps=None, epochs=2),
        service=tk.connect("mock"),
    )
    assert result.steps == 4  # 6 prompts in batches of 4: 2 batches per epoch


def test_bad_prompts_leave_no_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"answer": "7"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        train(_config(tmp_path, prompts=bad), service=tk.connect("mock"))
    assert not (tmp_path / "run").exists()


def test_one_step_of_sampling_costs_about_one_round_trip(tmp_path):
    service = tk.connect("mock", latency=0.2)
    train(_config(tmp_path, prompts=_prompts(8), batch_size=8, steps=1), service=service)
    [row] = _steps(tmp_path / "run")
    assert row["sample_time"] < 0.2 * 1.5 + 0.1  # 8 requests, all in flight at once
