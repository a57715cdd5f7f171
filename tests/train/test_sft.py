"""The SFT loop: learning, checkpoints, exact resume (also after kill -9), refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tinker import types

import tinkerkit as tk
from tinkerkit.errors import ConfigMismatchError
from tinkerkit.train.sft import Config, train


def _chats(n=12):
    return [
        {
            "messages": [
                {"role": "user", "content": f"Code word {i}?"},
                {"role": "assistant", "content": f"w{i * 7 % 10}x"},
            ]
        }
        for i in range(n)
    ]


def _write(path: Path, chats) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in chats))
    return path


def _config(tmp_path, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    base = dict(
        data=_write(tmp_path / "chats.jsonl", _chats()),
        epochs=4,
        batch_size=4,
        learning_rate=5e-3,
        rank=8,
        log_dir=tmp_path / "run",
        progress=False,
    )
    base.update(kw)
    return Config(**base)


def _greedy(sampler_path, service):
    sampler = service.create_sampling_client(model_path=sampler_path).result()
    tok = tk.tokenizer_of(sampler)
    prompt = types.ModelInput.from_ints(
        tok.encode("<|im_start|>user\nCode word 3?<|im_end|>\n<|im_start|>assistant\n")
    )
    seq = (
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=8, temperature=0.0, stop=[]))
        .result()
        .sequences[0]
    )
    return seq.tokens, seq.logprobs


def test_loss_falls_and_files_are_written(tmp_path):
    result = train(_config(tmp_path), service=tk.connect("mock"))
    losses = [m["loss"] for m in result.metrics if "loss" in m]
    assert len(losses) == result.steps == 12
    assert losses[-1] < 0.5 * losses[0]
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert {"step", "epoch", "loss", "lr", "tokens", "examples", "step_time"} <= set(rows[0])
    entries = [
        json.loads(line)
        for line in (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()
    ]
    assert [e["name"] for e in entries] == ["epoch-1", "epoch-2", "epoch-3", "final"]
    assert {"name", "step", "state_path", "sampler_path"} <= set(entries[-1])
    assert entries[-1]["sampler_path"] == result.sampler_path


def test_resume_gives_identical_weights(tmp_path):
    service = tk.connect("mock")
    full = train(_config(tmp_path / "a"), service=service)
    # A run that stops after epoch 2 (a shorter loop standing in for a crash)...
    partial_dir = tmp_path / "b"
    cfg = _config(partial_dir)
    _run_until(cfg, service, stop_step=6)
    resumed = train(Config(**{**cfg.__dict__, "resume": True}), service=service)
    assert resumed.steps == full.steps
    assert _greedy(full.sampler_path, service) == _greedy(resumed.sampler_path, service)
    losses_full = [m["loss"] for m in full.metrics if "loss" in m]
    rows = [json.loads(x) for x in (partial_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows if "loss" in r] == losses_full


def _stop_after(step):
    def callback(row):
        if row.get("step") == step and "loss" in row:
            raise KeyboardInterrupt

    return callback


def _run_until(cfg, service, stop_step):
    with pytest.raises(KeyboardInterrupt):
        train(Config(**{**cfg.__dict__, "callbacks": (_stop_after(stop_step),)}), service=service)


def test_resume_refuses_changed_settings(tmp_path):
    service = tk.connect("mock")
    cfg = _config(tmp_path)
    _run_until(cfg, service, stop_step=5)
    with pytest.raises(ConfigMismatchError, match="rank"):
        train(Config(**{**cfg.__dict__, "resume": True, "rank": 16}), service=service)
    _write(tmp_path / "chats.jsonl", _chats(13))
    with pytest.raises(ConfigMismatchError, match="data"):
        train(Config(**{**cfg.__dict__, "resume": True}), service=service)


def test_bad_data_leaves_no_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_chats(1)[0]) + "\n{oops\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinkerkit.cli",
            "sft",
            "--data",
            str(bad),
            "--backend",
            "mock",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "bad.jsonl:2" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "logs").exists()


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = _write(tmp_path / "chats.jsonl", _chats())
    env = {**os.environ, "TINKERKIT_HOME": os.environ["TINKERKIT_HOME"]}
    common = [
        "--data",
        str(data),
        "--backend",
        "mock",
        "--rank",
        "8",
        "--epochs",
        "8",
        "--batch-size",
        "4",
        "--lr",
        "5e-3",
        "--latency",
        "0.05",
        "--save-every",
        "3",
    ]
    cli = [sys.executable, "-m", "tinkerkit.cli", "sft"]
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cli, *common, "--log-dir", str(killed_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = killed_dir / "checkpoints.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("\n") >= 1):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    names = [json.loads(x)["name"] for x in log.read_text().splitlines() if x.strip()]
    assert names and "final" not in names, "the run must be killed mid-way"
    subprocess.run(
        [*cli, *common, "--log-dir", str(killed_dir), "--resume"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*cli, *common, "--log-dir", str(tmp_path / "clean")],
        env=env,
        check=True,
        capture_output=True,
    )

    service = tk.connect("mock")
    finals = []
    for folder in (killed_dir, tmp_path / "clean"):
        entries = [json.loads(x) for x in (folder / "checkpoints.jsonl").read_text().splitlines()]
        assert entries[-1]["name"] == "final" and entries[-1]["step"] == 24
        finals.append(_greedy(entries[-1]["sampler_path"], service))
    assert finals[0][0] == finals[1][0]
    np.testing.assert_array_equal(finals[0][1], finals[1][1])


def test_api_key_never_written(tmp_path, monkeypatch, capfd):
    secret = "tml-SECRET-dummy-0123456789"
    monkeypatch.setenv("TINKER_API_KEY", secret)
    train(_config(tmp_path, progress=True), service=tk.connect("mock"))
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore")
    for path in Path(os.environ["TINKERKIT_HOME"]).rglob("*.json"):
        assert secret not in path.read_text(errors="ignore")
