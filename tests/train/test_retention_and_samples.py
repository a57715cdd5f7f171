"""keep_last deletes old checkpoints from the log and the store (resume still exact);
previews and transcripts go to samples.jsonl, one kind of row per file."""

from __future__ import annotations

import pytest

import tinkerkit as tk
from tinkerkit.train.checkpoints import CheckpointLog
from tinkerkit.train.retention import prune

from .loops import in_store, lines, losses, rerun, run, sft_config, stop_after


def test_keep_last_deletes_older_checkpoints_and_resume_still_matches(tmp_path):
    service = tk.connect("mock")
    full = run("sft", tmp_path / "full", service, save_every=1)
    kept = run("sft", tmp_path / "kept", service, save_every=1, keep_last=2)
    entries = lines(tmp_path / "kept" / "checkpoints.jsonl")
    assert [e["name"] for e in entries] == ["step-000004", "step-000005", "final"]
    run_id = kept.state_path.removeprefix("tinker://").split("/")[0]
    for step in range(1, 6):
        for kind in ("weights", "sampler_weights"):
            assert in_store(f"tinker://{run_id}/{kind}/step-{step:06d}") == (step >= 4)
    assert abs(kept.final_loss - full.final_loss) <= 1e-9

    # Interrupted after step 3 (checkpoints 1 and 2 committed; 3's line was not written
    # yet), resumed: same final loss, and the resumed run's checkpoints displace the old.
    config = sft_config(tmp_path / "again", save_every=1, keep_last=2, pipeline_depth=1)
    with pytest.raises(KeyboardInterrupt):
        rerun(config, service, callbacks=(stop_after(3),))
    before = lines(tmp_path / "again" / "checkpoints.jsonl")
    assert [e["name"] for e in before] == ["step-000001", "step-000002"]
    resumed = rerun(config, service, resume=True)
    assert abs(resumed.final_loss - full.final_loss) <= 1e-9
    assert losses(tmp_path / "again") == losses(tmp_path / "full")
    after = lines(tmp_path / "again" / "checkpoints.jsonl")
    assert [e["name"] for e in after] == ["step-000004", "step-000005", "final"]
    assert all(in_store(e["state_path"]) and in_store(e["sampler_path"]) for e in after)
    assert not any(in_store(e["state_path"]) or in_store(e["sampler_path"]) for e in before)


def test_prune_keeps_final_and_survives_missing_checkpoints(tmp_path):
    log = CheckpointLog(tmp_path)
    log.path.write_text(
        "".join(
            f'{{"batch": 0, "epoch": {i}, "name": "{name}", "sampler_path": "s{i}", '
            f'"seed": 0, "state_path": "w{i}", "step": {i}}}\n'
            for i, name in enumerate(["a", "b", "final-old", "c", "d"])
        ).replace('"final-old"', '"final"')
    )
    deleted: list[str] = []

    def delete(path: str) -> None:
        deleted.append(path)
        if path == "w0":
            raise tk.errors.CheckpointNotFoundError(path)

    dropped = prune(log, 1, delete)
    assert [e.name for e in dropped] == ["a", "b", "c"]
    assert deleted == ["w0", "s0", "w1", "s1", "w3", "s3"]
    assert [e.name for e in log.entries()] == ["final", "d"]
    assert prune(log, 1, delete) == [] and prune(log, 0, delete) == []


def test_previews_and_transcripts_go_to_samples_jsonl(tmp_path):
    service = tk.connect("mock")
    config = sft_config(
        tmp_path / "sft",
        sample_prompts=("Code word 3?",),
        sample_every=3,
        sample_max_tokens=4,
        save_every=2,
        pipeline_depth=1,
    )
    with pytest.raises(KeyboardInterrupt):  # stopped after step 5, resumed from step 4
        rerun(config, service, callbacks=(stop_after(5),))
    result = rerun(config, service, resume=True)
    metrics = lines(tmp_path / "sft" / "metrics.jsonl")
    samples = lines(tmp_path / "sft" / "samples.jsonl")
    assert [r["step"] for r in metrics] == [1, 2, 3, 4, 5, 6]
    assert all("loss" in r for r in metrics) and not any("completion" in r for r in metrics)
    assert [(r["step"], r["prompt"]) for r in samples] == [(3, "Code word 3?"), (6, "Code word 3?")]
    assert {k for r in samples for k in r} == {"step", "prompt", "completion"}
    assert result.samples == samples and result.metrics == metrics  # the whole run

    rl = run("rl", tmp_path / "rl", service)
    assert [r["step"] for r in lines(tmp_path / "rl" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    transcripts = lines(tmp_path / "rl" / "samples.jsonl")
    assert [r["step"] for r in transcripts] == [3, 6] and rl.samples == transcripts
    assert {k for r in transcripts for k in r} == {"step", "prompt", "completion", "reward"}
