"""train/run.py and train/pipeline.py on their own: the frame every loop shares.

The pipeline finishes items in submission order with at most ``depth`` in flight; a
``Run`` numbers steps across resumes, saves each checkpoint line only once its saves
have landed, and returns results read back from the run's files."""

from __future__ import annotations

import pytest

import tinkerkit as tk
from tinkerkit.train.batching import Cursor
from tinkerkit.train.pipeline import Pipeline
from tinkerkit.train.run import Run, Step, every

from .loops import lines, rl_config, sft_config


class _Future:
    def __init__(self, value: int, resolved: list[int]) -> None:
        self.value, self.resolved = value, resolved

    def result(self) -> int:
        self.resolved.append(self.value)
        return self.value


def test_pipeline_finishes_in_order_with_depth_in_flight():
    resolved: list[int] = []
    finished: list[int] = []
    pipeline = Pipeline(depth=2)
    for i in range(5):
        pipeline.submit(_Future(i, resolved), lambda f: finished.append(f.result()))
        assert len(pipeline) == min(i + 1, 2)
    assert finished == [0, 1, 2]
    pipeline.drain()
    assert finished == resolved == [0, 1, 2, 3, 4]
    assert len(pipeline) == 0
    with pytest.raises(ValueError, match="depth"):
        Pipeline(depth=0)


def test_every_and_epoch_ends():
    step = Step(6, 1, [], Cursor(2, 0), last=False)
    assert step.ends_epoch and every(3, step) and every(2, step)
    assert not every(4, step) and not every(0, step)
    assert not Step(5, 1, [], Cursor(1, 2), last=False).ends_epoch


def test_steps_continue_from_the_resumed_checkpoint(tmp_path):
    service = tk.connect("mock")
    tk.sft.train(sft_config(tmp_path / "a", save_every=2), service=service)
    log = tmp_path / "a" / "checkpoints.jsonl"
    entries = lines(log)
    # Cut the run back to its step-4 checkpoint, as a kill after step 4 leaves it.
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:2]))
    assert [e["name"] for e in entries[:2]] == ["step-000002", "step-000004"]
    config = sft_config(tmp_path / "a", save_every=2, resume=True)
    run = Run.start(config, {"model": config.model})
    assert not run.finished and run.start_step == run.step == 4
    batches = list(run.steps(list(range(8)), 4, 3))
    assert [s.number for s in batches] == [5, 6]
    assert [s.epoch for s in batches] == [2, 2]
    assert [s.last for s in batches] == [False, True]
    assert batches[-1].following == Cursor(3, 0)


@pytest.mark.parametrize("make", [sft_config, rl_config], ids=["sft", "rl"])
def test_a_resumed_result_holds_the_whole_run_read_from_its_files(make, tmp_path):
    service = tk.connect("mock")
    train = tk.sft.train if make is sft_config else tk.rl.train
    full = train(make(tmp_path / "full", save_every=2), service=service)
    folder = tmp_path / "cut"
    train(make(folder, save_every=2), service=service)
    # Back to the step-4 checkpoint: this process trains only steps 5 and 6.
    log = folder / "checkpoints.jsonl"
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:2]))
    resumed = train(make(folder, save_every=2, resume=True), service=service)
    assert [r["step"] for r in resumed.metrics if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert resumed.metrics == lines(folder / "metrics.jsonl")
    samples = folder / "samples.jsonl"
    assert resumed.samples == (lines(samples) if samples.exists() else [])
    assert resumed.steps == 6 and resumed.sampler_path == lines(log)[-1]["sampler_path"]
    losses = [r["loss"] for r in resumed.metrics if "loss" in r]
    assert losses == pytest.approx([r["loss"] for r in full.metrics if "loss" in r], abs=1e-9)
    if make is rl_config:
        assert len(resumed.rewards) == 6 and resumed.rewards == pytest.approx(full.rewards)
