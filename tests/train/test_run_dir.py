"""A loop's log folder: an existing run is refused, overwritten on request, or resumed —
a finished one to its recorded result; damaged checkpoint logs are named by line.

The ``dpo`` case needs torch (DPO is a custom loss, run on torch through
``forward_backward_custom``): it skips without it (``pytest.importorskip``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import tinkerkit as tk
from tinkerkit.cli import main
from tinkerkit.errors import (
    ConfigMismatchError,
    DataError,
    RunExistsError,
    RunLogError,
    TinkerkitWarning,
)
from tinkerkit.train.checkpoints import CheckpointLog

from .loops import LOOPS, home_runs, lines, losses, rerun, run, sft_config, stop_after


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_an_existing_run_is_refused_and_a_finished_one_resumes_to_its_result(loop, tmp_path):
    if loop == "dpo":
        pytest.importorskip("torch")
    make, train = LOOPS[loop]
    config = make(tmp_path / "run")
    done = train(config, service=tk.connect("mock"))
    before, runs = _files(tmp_path / "run"), home_runs()
    with pytest.raises(RunExistsError) as info:
        train(config, service=tk.connect("mock"))
    assert str(info.value) == (
        f"{tmp_path / 'run'} already holds a run (checkpoints.jsonl, metrics.jsonl, run.json"
        + (", samples.jsonl" if loop == "rl" else "")
        + "); it finished at step 6: pass --resume (resume=True) to get its result, "
        "--overwrite (overwrite=True) to replace it, or choose a new --log-dir (log_dir=)"
    )
    assert _files(tmp_path / "run") == before and home_runs() == runs
    assert len(losses(tmp_path / "run")) == 6
    # Resumed, it is the recorded result; no service at all: a finished run needs no client.
    again = rerun(config, None, resume=True)
    assert again.already_finished and not done.already_finished
    assert (again.state_path, again.sampler_path, again.steps) == (
        done.state_path,
        done.sampler_path,
        6,
    )
    assert again.metrics == done.metrics and again.samples == done.samples
    assert [r["loss"] for r in again.metrics if "loss" in r][-1] == done.metrics[-1]["loss"]
    assert _files(tmp_path / "run") == before and home_runs() == runs
    # ... but what defines the run is still checked, before any client exists.
    with pytest.raises(ConfigMismatchError, match="seed"):
        rerun(config, None, resume=True, seed=1)


def test_the_cli_refuses_an_existing_log_dir_in_one_line(tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in sft_config(tmp_path).data))
    args = ["sft", "--data", str(data), "--backend", "mock", "--rank", "4", "--epochs", "1"]
    args += ["--batch-size", "4", "--log-dir", str(tmp_path / "run")]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert again.stderr.splitlines() == [
        f"error: {tmp_path / 'run'} already holds a run (checkpoints.jsonl, metrics.jsonl, "
        "run.json); it finished at step 2: pass --resume (resume=True) to get its result, "
        "--overwrite (overwrite=True) to replace it, or choose a new --log-dir (log_dir=)"
    ]
    assert len(losses(tmp_path / "run")) == 2
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.splitlines()[0] == (
        f"already finished: {tmp_path / 'run'} (nothing trained or saved)"
    )
    assert [e["name"] for e in lines(tmp_path / "run" / "checkpoints.jsonl")] == ["final"]


def test_overwrite_replaces_the_run_only_once_its_inputs_are_valid(tmp_path):
    service = tk.connect("mock")
    folder = tmp_path / "run"
    first = run("sft", folder, service, save_every=2)
    (folder / "loss.png").write_bytes(b"stale plot")
    (folder / "notes.txt").write_text("mine")
    before = _files(folder)
    # Bad data: refused before anything is touched, the old run stays whole.
    with pytest.raises(DataError):
        run("sft", folder, service, data=[{"messages": "oops"}], overwrite=True)
    assert _files(folder) == before
    second = run("sft", folder, service, epochs=1, overwrite=True)
    assert [e["name"] for e in lines(folder / "checkpoints.jsonl")] == ["final"]
    assert len(losses(folder)) == second.steps == 2
    assert json.loads((folder / "run.json").read_text())["identity"]["epochs"] == 1
    assert not (folder / "loss.png").exists() and (folder / "notes.txt").read_text() == "mine"
    assert second.state_path != first.state_path
    with pytest.raises(tk.errors.TinkerkitError, match="contradict"):
        run("sft", folder, service, resume=True, overwrite=True)


def _interrupted(tmp_path):
    """A run stopped after step 5, with checkpoints at steps 2 and 4."""
    service = tk.connect("mock")
    config = sft_config(tmp_path / "run", save_every=2, pipeline_depth=1)
    with pytest.raises(KeyboardInterrupt):
        rerun(config, service, callbacks=(stop_after(5),))
    return config, service


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path):
    full = run("sft", tmp_path / "full", tk.connect("mock"), save_every=2)
    config, service = _interrupted(tmp_path)
    log = tmp_path / "run" / "checkpoints.jsonl"
    assert [e["name"] for e in lines(log)] == ["step-000002", "step-000004"]
    with log.open("a") as handle:  # what kill -9 in the middle of an append leaves
        handle.write('{"batch": 1, "epoch": 2, "name": "step-0000')
    with pytest.warns(TinkerkitWarning, match=r"checkpoints\.jsonl:3: an unfinished last line"):
        resumed = rerun(config, service, resume=True)
    assert abs(resumed.final_loss - full.final_loss) <= 1e-9
    assert [e["name"] for e in lines(log)] == ["step-000002", "step-000004", "final"]


DAMAGE = [
    (lambda rows: ["{oops", *rows[1:]], 1, None, "not a JSON line"),
    (lambda rows: [rows[0], json.dumps({**json.loads(rows[1]), "state_path": None})], 2,
     "state_path", "None is not a str"),
    (lambda rows: [rows[0], json.dumps({k: v for k, v in json.loads(rows[1]).items()
                                        if k != "step"})], 2, "step", "missing"),
    (lambda rows: ["[1, 2]", rows[1]], 1, None, "not a JSON object"),
]  # fmt: skip


def test_a_damaged_checkpoint_log_names_file_and_line(tmp_path):
    config, service = _interrupted(tmp_path)
    log = tmp_path / "run" / "checkpoints.jsonl"
    good = log.read_text().splitlines()
    runs = home_runs()
    for damage, line, field, problem in DAMAGE:
        log.write_text("\n".join(damage(good)) + "\n")
        with pytest.raises(RunLogError) as info:
            rerun(config, service, resume=True)
        where = f"{log}:{line}" + (f": field '{field}'" if field else "")
        assert str(info.value) == (
            f"{where}: {problem}; remove this line and the ones after it to resume from the "
            "checkpoint before it, or start the run again with --overwrite (overwrite=True)"
        )
        assert (info.value.line, info.value.field) == (line, field)
    assert home_runs() == runs  # refused before any client was created


def test_checkpoint_log_keeps_a_complete_last_line_missing_its_newline(tmp_path):
    log = CheckpointLog(tmp_path)
    entry = {"name": "step-1", "step": 1, "state_path": "s", "sampler_path": "p"}
    log.path.write_text(json.dumps({**entry, "epoch": 0, "batch": 1, "seed": 0}))
    assert [e.step for e in log.entries()] == [1]
    log.drop_torn_tail()
    assert log.path.read_text().endswith("}\n")


def test_a_log_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(tk.errors.TinkerkitError, match="is a file, not a folder"):
        run("sft", tmp_path / "run", tk.connect("mock"))
    assert home_runs() == []


def test_a_resume_with_changed_data_is_refused_before_any_client(tmp_path):
    config, service = _interrupted(tmp_path)
    runs = home_runs()
    with pytest.raises(ConfigMismatchError, match=r"^data differs from the saved run"):
        rerun(config, service, resume=True, data=config.data[:-1])
    with pytest.raises(ConfigMismatchError, match=r"^batch_size differs"):
        rerun(config, service, resume=True, batch_size=2)
    assert home_runs() == runs


def test_data_the_tokenizer_refuses_leaves_no_run_under_the_home(tmp_path):
    """Offline, datums are built with the model's tokenizer before any client exists: a
    too-short max_length is refused with nothing recorded (no run.json, no session)."""
    import os

    home = Path(os.environ["TINKERKIT_HOME"])
    before = sorted(p.relative_to(home) for p in home.rglob("*")) if home.exists() else []
    from tinkerkit.errors import TinkerkitError

    with pytest.raises(TinkerkitError, match="over max_length=3"):
        tk.sft.train(sft_config(tmp_path / "a", max_length=3), service=tk.connect("mock"))
    after = sorted(p.relative_to(home) for p in home.rglob("*")) if home.exists() else []
    assert after == before
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
