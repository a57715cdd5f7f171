"""The on-disk checkpoint store: atomic, conflict-safe, readable from another process."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from tinkerkit.backends.engine import LoraConfig
from tinkerkit.backends.store import CheckpointStore, parse_tinker_path
from tinkerkit.errors import CheckpointExistsError, CheckpointNotFoundError, InvalidTinkerPathError


@pytest.fixture
def store(tk_home):
    return CheckpointStore()


@pytest.fixture
def run(store):
    return store.create_run("mock", "tinkerkit/tiny", LoraConfig(rank=4), None)


WEIGHTS = {"base_model.model.lm_head.lora_A.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}


def test_save_and_load_exact(store, run):
    record = store.save(run, "weights", "s1", WEIGHTS, {"r": 4}, optimizer={"step": np.array([3])})
    loaded = store.load(record.path, with_optimizer=True)
    np.testing.assert_array_equal(
        loaded.weights["base_model.model.lm_head.lora_A.weight"],
        WEIGHTS["base_model.model.lm_head.lora_A.weight"],
    )
    assert int(loaded.optimizer["step"][0]) == 3


def test_sampler_checkpoint_is_a_tinker_archive(store, run, tk_home):
    record = store.save(run, "sampler_weights", "final", WEIGHTS, {"r": 4, "peft_type": "LORA"})
    archive = store.directory(record.path) / "archive.tar"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["adapter_config.json", "adapter_model.safetensors"]
        assert json.load(tar.extractfile("adapter_config.json"))["r"] == 4


def test_duplicate_name_refused_and_nothing_left_behind(store, run):
    record = store.save(run, "weights", "dup", WEIGHTS, {})
    with pytest.raises(CheckpointExistsError, match="dup"):
        store.save(run, "weights", "dup", WEIGHTS, {})
    folder = store.directory(record.path).parent
    assert sorted(p.name for p in folder.iterdir()) == ["dup"]


def test_failed_write_leaves_no_partial_checkpoint(store, run, monkeypatch):
    import tinkerkit.backends.store as store_module

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "st_save", explode)
    with pytest.raises(OSError):
        store.save(run, "weights", "half", WEIGHTS, {})
    folder = store.root / run.run_id / "weights"
    assert list(folder.iterdir()) == []
    with pytest.raises(CheckpointNotFoundError):
        store.load(f"tinker://{run.run_id}/weights/half")


def test_loadable_from_another_process(store, run, tk_home):
    record = store.save(run, "weights", "x", WEIGHTS, {})
    code = (
        "from tinkerkit.backends.store import CheckpointStore;"
        f"w = CheckpointStore().load({record.path!r}).weights;"
        "print(float(next(iter(w.values())).sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == 15.0


@pytest.mark.parametrize(
    "path",
    [
        "s3://x/weights/y",
        "tinker://run/other/y",
        "tinker://run/weights",
        "tinker://../weights/y",
        "tinker://run/weights/..",
    ],
)
def test_bad_paths_are_refused(path):
    with pytest.raises(InvalidTinkerPathError):
        parse_tinker_path(path)


def test_expired_checkpoint(store, run, monkeypatch):
    from datetime import timedelta

    import tinkerkit.backends.store as store_module

    record = store.save(run, "weights", "short", WEIGHTS, {}, ttl_seconds=3600)
    real_now = store_module._now
    monkeypatch.setattr(store_module, "_now", lambda: real_now() + timedelta(hours=2))
    with pytest.raises(Exception, match="expired"):
        store.load(record.path)


def _expire_everything(monkeypatch, hours: int = 2) -> None:
    from datetime import timedelta

    import tinkerkit.backends.store as store_module

    real_now = store_module._now
    monkeypatch.setattr(store_module, "_now", lambda: real_now() + timedelta(hours=hours))


def test_listing_leaves_expired_checkpoints_out_and_purge_deletes_them(store, run, monkeypatch):
    kept = store.save(run, "weights", "kept", WEIGHTS, {})
    short = store.save(run, "weights", "short", WEIGHTS, {}, ttl_seconds=3600)
    _expire_everything(monkeypatch)
    assert [r.path for r in store.list_checkpoints(run.run_id)] == [kept.path]
    listed = store.list_checkpoints(run.run_id, include_expired=True)
    assert {r.path for r in listed} == {kept.path, short.path}
    assert store.record(short.path, include_expired=True).path == short.path
    assert store.purge_expired() == [short.path]
    assert not (store.root / run.run_id / "weights" / "short").exists()
    assert store.record(kept.path).path == kept.path


def test_update_rewrites_the_record_of_a_live_checkpoint(store, run):
    record = store.save(run, "weights", "u", WEIGHTS, {})
    store.update(record.path, expires_at="2999-01-01T00:00:00+00:00", extra={"public": True})
    again = store.record(record.path)
    assert again.expires_at == "2999-01-01T00:00:00+00:00" and again.extra == {"public": True}
    with pytest.raises(AttributeError):
        store.update(record.path, path="tinker://elsewhere/weights/u")


def test_copy_shares_the_files_and_has_its_own_record(store, run):
    source = store.save(run, "weights", "src", WEIGHTS, {"r": 4}, optimizer={"s": np.ones(2)})
    other = store.create_run("mock", "tinkerkit/tiny", LoraConfig(rank=4), None)
    copy = store.copy(source.path, other, ttl_seconds=7200)
    assert copy.path == f"tinker://{other.run_id}/weights/src"
    assert copy.expires_at is not None and copy.extra["copied_from"] == source.path
    loaded = store.load(copy.path, with_optimizer=True)
    np.testing.assert_array_equal(
        loaded.weights["base_model.model.lm_head.lora_A.weight"],
        WEIGHTS["base_model.model.lm_head.lora_A.weight"],
    )
    original, copied = store.files(source.path), store.files(copy.path)
    assert set(original) == set(copied)
    for name in original:  # hard links: the same bytes on disk (tmp_path allows them)
        assert original[name].stat().st_ino == copied[name].stat().st_ino
    store.delete(source.path)
    assert store.load(copy.path).weights  # the copy outlives its source


def test_runs_record_their_session(store):
    store.sessions.ensure("session-a", "mock", user_metadata={"k": "v"}, display_name="nightly")
    run = store.create_run(
        "mock", "tinkerkit/tiny", LoraConfig(rank=4), None, session_id="session-a"
    )
    record = store.sessions.get("session-a")
    assert (record.backend, record.user_metadata, record.display_name) == (
        "mock",
        {"k": "v"},
        "nightly",
    )
    assert store.get_run(run.run_id).session_id == "session-a"
    # A run of a session not recorded yet records it.
    store.create_run("mock", "tinkerkit/tiny", LoraConfig(rank=4), None, session_id="session-b")
    assert store.sessions.get("session-b").backend == "mock"
    # Ids that cannot name a file are never recorded.
    for bad in ("a/b", "x\x00y", "s" * 5000, ".hidden"):
        assert store.sessions.ensure(bad, "mock") is None


def test_session_finish_reason_first_wins_and_status(store):
    store.sessions.ensure("session-f", "mock")
    assert store.sessions.get("session-f").status().type == "active"  # this process owns it
    store.sessions.finish("session-f", "errored", "boom")
    store.sessions.finish("session-f", "success", None)
    status = store.sessions.get("session-f").status()
    assert (status.type, status.reason.type, status.detail) == (
        "client_finished",
        "errored",
        "boom",
    )
    store.sessions.ensure("session-orphan", "mock", pid=None, host=None)
    assert store.sessions.get("session-orphan").status() is None
    store.sessions.finish("session-never-recorded", "success", None)
    assert store.sessions.get("session-never-recorded") is None


@pytest.mark.parametrize("run_id", ["../x", "a/b", ".sessions", ""])
def test_run_ids_that_are_not_folders_of_the_store_are_not_found(store, run_id):
    with pytest.raises(CheckpointNotFoundError):
        store.get_run(run_id)
