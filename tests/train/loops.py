"""Tiny SFT, DPO and RL runs on mock (a second or less each), shared by the run-dir,
retention and interrupt tests: every test here runs each loop the same way."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tinkerkit as tk
from tinkerkit.recipes import char_fraction


def chats(n: int = 8) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Code word {i}?"},
                {"role": "assistant", "content": f"w{i * 7 % 10}x"},
            ]
        }
        for i in range(n)
    ]


def sft_config(log_dir: Path, **kw: Any) -> tk.sft.Config:
    """6 steps: 8 chats, batches of 4, 3 epochs."""
    base: dict[str, Any] = dict(
        data=chats(),
        epochs=3,
        batch_size=4,
        learning_rate=5e-3,
        rank=4,
        save_each_epoch=False,
        log_dir=log_dir,
        progress=False,
    )
    return tk.sft.Config(**{**base, **kw})


def dpo_config(log_dir: Path, **kw: Any) -> tk.preference.DPOConfig:
    """6 steps: 4 pairs, batches of 2, 3 epochs."""
    pairs = [
        {"prompt": f"Help with {i}?", "chosen": "Sure thing.", "rejected": "No."} for i in range(4)
    ]
    base: dict[str, Any] = dict(
        data=pairs,
        epochs=3,
        batch_size=2,
        learning_rate=5e-3,
        rank=4,
        log_dir=log_dir,
        progress=False,
    )
    return tk.preference.DPOConfig(**{**base, **kw})


def rl_config(log_dir: Path, **kw: Any) -> tk.rl.Config:
    """6 steps of 2 prompts x 2 samples of 4 tokens."""
    base: dict[str, Any] = dict(
        prompts=[f"Write something #{i}" for i in range(4)],
        reward=char_fraction("a"),
        group_size=2,
        batch_size=2,
        steps=6,
        learning_rate=1e-2,
        max_tokens=4,
        rank=4,
        log_samples_every=3,
        log_samples=1,
        log_dir=log_dir,
        progress=False,
    )
    return tk.rl.Config(**{**base, **kw})


LOOPS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "sft": (sft_config, tk.sft.train),
    "dpo": (dpo_config, tk.preference.train_dpo),
    "rl": (rl_config, tk.rl.train),
}


def run(loop: str, log_dir: Path, service: Any, **kw: Any) -> Any:
    make, train = LOOPS[loop]
    return train(make(log_dir, **kw), service=service)


def rerun(config: Any, service: Any, **changes: Any) -> Any:
    train = {tk.sft.Config: tk.sft.train, tk.preference.DPOConfig: tk.preference.train_dpo}.get(
        type(config), tk.rl.train
    )
    return train(config.model_copy(update=changes), service=service)


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, each one whole (ends with a newline, parses)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path} ends in a torn line"
    return [json.loads(x) for x in text.splitlines()]


def losses(log_dir: Path) -> list[float]:
    return [r["loss"] for r in lines(log_dir / "metrics.jsonl") if "loss" in r]


def home_runs() -> list[str]:
    """The training runs recorded under TINKERKIT_HOME."""
    root = Path(os.environ["TINKERKIT_HOME"]) / "runs"
    return (
        sorted(p.name for p in root.iterdir() if (p / "run.json").is_file())
        if root.is_dir()
        else []
    )


def in_store(tinker_path: str) -> bool:
    """Whether an offline checkpoint exists under TINKERKIT_HOME."""
    run_id, kind, name = tinker_path.removeprefix("tinker://").split("/", 2)
    return (Path(os.environ["TINKERKIT_HOME"]) / "runs" / run_id / kind / name).is_dir()


def stop_after(step: int, key: str = "loss") -> Callable[[Any], None]:
    """A callback that stops the run (as Ctrl-C would) once ``step`` has been logged."""

    def callback(row: Any) -> None:
        if row.get("step") == step and key in row:
            raise KeyboardInterrupt

    return callback
