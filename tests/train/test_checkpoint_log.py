"""``CheckpointLog`` on its own (no loop): a torn last line is skipped with a warning and
cut off before the next append; any other damaged line, in the middle too, is a
``RunLogError`` naming the file and the line. (tests/train/test_run_dir.py covers the
same through a resumed loop; these pin the log's own behaviour.)"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path

import pytest

from tinkerkit.errors import RunLogError, TinkerkitWarning
from tinkerkit.train.checkpoints import CheckpointEntry, CheckpointLog


def entry(step: int) -> CheckpointEntry:
    return CheckpointEntry(
        name=f"step-{step:06d}",
        step=step,
        state_path=f"tinker://run/weights/step-{step:06d}",
        sampler_path=f"tinker://run/sampler_weights/step-{step:06d}",
        epoch=step // 4,
        batch=step % 4,
    )


def log_with(tmp_path: Path, *steps: int) -> CheckpointLog:
    log = CheckpointLog(tmp_path)
    for step in steps:
        log.append(entry(step))
    return log


TORN = '{"batch": 1, "epoch": 2, "name": "step-0000'  # kill -9 in the middle of an append


def test_entries_read_back_what_was_appended_in_order(tmp_path):
    log = log_with(tmp_path, 2, 4, 6)
    assert log.entries() == [entry(2), entry(4), entry(6)]
    assert log.last() == entry(6)
    assert CheckpointLog(tmp_path / "nowhere").entries() == []
    assert CheckpointLog(tmp_path / "nowhere").last() is None


def test_a_torn_last_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    log = log_with(tmp_path, 2, 4)
    with log.path.open("a") as handle:
        handle.write(TORN)
    with pytest.warns(TinkerkitWarning) as caught:
        assert log.entries() == [entry(2), entry(4)]
    assert str(caught[0].message) == (
        f"{log.path}:3: an unfinished last line (the run was killed while writing it) is ignored"
    )
    with pytest.warns(TinkerkitWarning):
        assert log.last() == entry(4)


def test_the_torn_line_is_cut_off_before_the_next_append(tmp_path):
    log = log_with(tmp_path, 2, 4)
    with log.path.open("a") as handle:
        handle.write(TORN)
    log.drop_torn_tail()
    assert TORN not in log.path.read_text()
    log.append(entry(6))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing torn is left to warn about
        assert log.entries() == [entry(2), entry(4), entry(6)]
    assert log.path.read_text().count("\n") == 3


def test_drop_torn_tail_leaves_a_sound_log_as_it_is(tmp_path):
    log = log_with(tmp_path, 2, 4)
    before = log.path.read_bytes()
    log.drop_torn_tail()
    assert log.path.read_bytes() == before
    CheckpointLog(tmp_path / "nowhere").drop_torn_tail()  # no log: nothing to do
    assert not (tmp_path / "nowhere").exists()


def test_a_complete_last_line_missing_only_its_newline_is_kept(tmp_path):
    log = log_with(tmp_path, 2)
    log.path.write_text(log.path.read_text() + json.dumps(asdict(entry(4))))
    assert log.entries() == [entry(2), entry(4)]
    log.drop_torn_tail()
    log.append(entry(6))
    assert log.entries() == [entry(2), entry(4), entry(6)]


def test_a_torn_middle_line_is_a_run_log_error_naming_file_and_line(tmp_path):
    log = log_with(tmp_path, 2, 4, 6)
    rows = log.path.read_text().splitlines()
    log.path.write_text("\n".join([rows[0], TORN, rows[2]]) + "\n")
    with pytest.raises(RunLogError) as info:
        log.entries()
    assert (info.value.path, info.value.line, info.value.field) == (str(log.path), 2, None)
    assert str(info.value).startswith(f"{log.path}:2: not a JSON line; remove this line")


def test_a_damaged_last_line_ending_in_a_newline_is_damage_not_a_torn_append(tmp_path):
    log = log_with(tmp_path, 2)
    with log.path.open("a") as handle:
        handle.write(TORN + "\n")  # an append never writes the newline before the end
    with pytest.raises(RunLogError) as info:
        log.entries()
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (lambda row: {k: v for k, v in row.items() if k != "sampler_path"}, "sampler_path",
         "missing"),
        (lambda row: {**row, "step": "4"}, "step", "'4' is not a int"),
        (lambda row: {**row, "epoch": True}, "epoch", "True is not a int"),
        (lambda row: {**row, "external_path": 7}, "external_path", "7 is not a str"),
    ],
)  # fmt: skip
def test_a_middle_line_with_a_bad_field_names_line_and_field(tmp_path, change, field, problem):
    log = log_with(tmp_path, 2, 4, 6)
    rows = log.path.read_text().splitlines()
    rows[1] = json.dumps(change(json.loads(rows[1])))
    log.path.write_text("\n".join(rows) + "\n")
    with pytest.raises(RunLogError) as info:
        log.entries()
    assert (info.value.line, info.value.field) == (2, field)
    assert str(info.value).startswith(f"{log.path}:2: field '{field}': {problem}; ")


def test_a_log_that_is_not_utf8_is_a_run_log_error(tmp_path):
    log = log_with(tmp_path, 2)
    log.path.write_bytes(b"\xff\xfe" + log.path.read_bytes())
    with pytest.raises(RunLogError, match="not UTF-8 text"):
        log.entries()
    with pytest.raises(RunLogError, match="not UTF-8 text"):
        log.drop_torn_tail()


def test_external_path_is_optional_and_written_only_when_set(tmp_path):
    log = CheckpointLog(tmp_path)
    log.append(entry(2))
    log.append(CheckpointEntry(**{**asdict(entry(4)), "external_path": "tinker://run/e/4"}))
    log.path.write_text(
        log.path.read_text() + json.dumps({**entry(6).line(), "external_path": None}) + "\n"
    )
    assert [e.external_path for e in log.entries()] == [None, "tinker://run/e/4", None]
    assert "external_path" not in log.path.read_text().splitlines()[0]


def test_rewrite_replaces_the_log(tmp_path):
    log = log_with(tmp_path, 2, 4, 6)
    log.rewrite([entry(2), entry(6)])
    assert log.entries() == [entry(2), entry(6)]
    log.rewrite([])
    assert log.entries() == []
