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
