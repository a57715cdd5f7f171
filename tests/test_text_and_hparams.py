"""Text helpers, hyperparameters and the small CLI commands.

``test_dpo_cli`` needs torch (DPO is a custom loss, run through
``forward_backward_custom`` on torch): it skips without it (``pytest.importorskip``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import tinkerkit as tk


def test_sample_text_returns_text_tokens_logprobs(tk_service):
    sampler = tk_service.create_sampling_client(base_model="tinkerkit/tiny").result()
    (out,) = tk.sample_text(sampler, "hello", max_tokens=5, temperature=0.0, stop=[])
    assert len(out.tokens) == 5 and len(out.logprobs) == 5
    assert out.text == tk.tokenizer_of(sampler).decode(out.tokens, skip_special_tokens=True).strip()
    again = tk.sample_text(
        sampler, [{"role": "user", "content": "hello"}], max_tokens=5, temperature=0.0, stop=[]
    )
    assert again[0].tokens == out.tokens  # a string is one user message
    raw = tk.sample_text(sampler, "hello", max_tokens=5, temperature=0.0, stop=[], chat=False)
    assert raw[0].tokens != out.tokens or raw[0].logprobs != out.logprobs


def test_hparams_presets_and_lr_suggestion(caplog):
    assert tk.hparams.LORA_RANKS == {
        "quick_test": 8,
        "standard": 32,
        "high_quality": 64,
        "maximum": 128,
    }
    assert tk.hparams.LEARNING_RATES == {"sft": 1e-4, "rl": 1e-5, "fine_adjustment": 5e-6}
    small = tk.hparams.suggest_lora_lr("meta-llama/Llama-3.2-1B")
    big = tk.hparams.suggest_lora_lr("meta-llama/Llama-3.1-70B")
    assert small.learning_rate > big.learning_rate  # wider models want smaller LoRA lr
    assert small.assumed_batch_size == 128
    assert tk.hparams.suggest_lora_lr(
        "meta-llama/Llama-3.2-1B", batch_size=32
    ).learning_rate == pytest.approx(small.learning_rate / 2)
    with caplog.at_level("INFO", logger="tinkerkit"):
        unknown = tk.hparams.suggest_lora_lr("acme/secret-model")
    assert unknown.learning_rate == 1e-4 and "acme/secret-model" in caplog.text


def test_hparams_read_the_config_defaults():
    """HYPERPARAMS' SFT and RL numbers are the loops' Config defaults, not a copy."""
    from tinkerkit.train import rl_config, sft_config

    sft = sft_config.Config(data=[])
    rl = rl_config.Config(prompts=["a"], reward=lambda *a, **k: 0.0)
    assert tk.hparams.HYPERPARAMS["sft"] == {
        "rank": sft.rank,
        "learning_rate": sft.learning_rate,
        "batch_size": sft.batch_size,
        "epochs": sft.epochs,
    }
    assert tk.hparams.HYPERPARAMS["sft"] == {
        "rank": 32,
        "learning_rate": 1e-4,
        "batch_size": 8,
        "epochs": 3,
    }
    assert tk.hparams.HYPERPARAMS["rl"] == {
        "rank": rl.rank,
        "learning_rate": rl.learning_rate,
        "samples_per_prompt": rl.group_size,
        "iterations": 1000,
    }
    assert tk.hparams.LEARNING_RATES["sft"] == sft.learning_rate
    assert tk.hparams.LEARNING_RATES["rl"] == rl.learning_rate


def test_sft_runs_inside_a_running_event_loop(tmp_path):
    """A notebook cell is a running event loop: the sync entry point must still work."""
    chats = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    ] * 4
    config = tk.sft.Config(
        data=chats,
        epochs=1,
        batch_size=2,
        learning_rate=1e-3,
        rank=4,
        log_dir=tmp_path / "nb",
        progress=False,
    )

    async def cell():
        sync_result = tk.sft.train(config, service=tk.connect("mock"))
        async_result = await tk.sft.train_async(
            tk.sft.Config(**{**config.__dict__, "log_dir": tmp_path / "nb2"}),
            service=tk.connect("mock"),
        )
        return sync_result, async_result

    a, b = asyncio.run(cell())
    assert a.steps == b.steps == 2


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "tinkerkit.cli", *args], capture_output=True, text=True, **kw
    )


def test_notes_cli_output_trains_with_sft_cli(tmp_path):
    from tinkerkit.data.notes import examples_dir

    out = _cli("notes", str(examples_dir()), "--out", str(tmp_path / "train.jsonl"))
    assert out.returncode == 0, out.stderr
    assert "pairs written" in out.stdout
    run = _cli(
        "sft",
        "--data",
        str(tmp_path / "train.jsonl"),
        "--backend",
        "mock",
        "--rank",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "6",
        "--lr",
        "5e-3",
        "--log-dir",
        str(tmp_path / "run"),
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    sampler_path = json.loads(
        (tmp_path / "run" / "checkpoints.jsonl").read_text().splitlines()[-1]
    )["sampler_path"]
    sample = _cli(
        "sample",
        "--backend",
        "mock",
        "--checkpoint",
        sampler_path,
        "--prompt",
        "hi",
        "--max-tokens",
        "4",
        "--json",
    )
    assert sample.returncode == 0, sample.stderr
    record = json.loads(sample.stdout)
    assert len(record["tokens"]) == len(record["logprobs"]) <= 4


def test_dpo_cli(tmp_path):
    pytest.importorskip("torch")
    import random

    rng = random.Random(0)
    rows = [
        {
            "prompt": f"Can you help me with task {i}?",
            "chosen": rng.choice(["Sure, happy to help.", "Of course!"]),
            "rejected": "No.",
        }
        for i in range(12)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = _cli(
        "dpo",
        "--data",
        str(tmp_path / "pairs.jsonl"),
        "--backend",
        "mock",
        "--lr",
        "5e-3",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--rank",
        "8",
        "--eval-split",
        "0.25",
        "--log-dir",
        str(tmp_path / "dpo"),
    )
    assert out.returncode == 0, out.stderr
    assert "held-out accuracy" in out.stdout and "→ 1.00" in out.stdout
