"""The main job: `tinkerkit demo` learns the shipped notes (asserted with counts)."""

from __future__ import annotations

import json

import pytest

from tinkerkit.demo import run_demo


@pytest.mark.parametrize("backend", ["mock", "local"])
def test_demo_learns_the_notes(tmp_path, backend):
    if backend == "local":
        pytest.importorskip("torch")
    lines: list[str] = []
    result = run_demo(backend, out_dir=tmp_path / "demo", echo=lines.append)
    assert result.total == 13
    assert result.correct_before <= 1
    assert result.correct_after >= 11
    assert result.last_loss < 0.05 * result.first_loss
    text = "\n".join(lines)
    assert f"{result.correct_before}/13 before training, {result.correct_after}/13 after" in text
    assert "does not generalise" in text
    assert result.sampler_path in text
    chats = (tmp_path / "demo" / "train.jsonl").read_text().splitlines()
    assert len(chats) == 13 and json.loads(chats[0])["messages"][1]["role"] == "assistant"
    if backend == "local":
        assert result.adapter_dir is not None
        assert {p.name for p in result.adapter_dir.iterdir()} == {
            "adapter_config.json",
            "adapter_model.safetensors",
        }
    if result.plot_path is not None:
        assert result.plot_path.stat().st_size > 1000
