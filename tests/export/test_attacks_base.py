"""Hostile base folders and adapters: each is refused with one typed error naming the
file and the field, nothing is written outside ``--out``, nothing half-written is left."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

import tinkerkit.export as tke
from tinkerkit.cli_export import group

Q = "model.layers.0.self_attn.q_proj.weight"
EMBED = "model.embed_tokens.weight"
CONFIG = {"model_type": "llama", "vocab_size": 8, "hidden_size": 4, "tie_word_embeddings": True}


def make_base(path: Path, *, index: dict[str, str] | None = None) -> Path:
    """A two-tensor "llama" folder: enough for merge's checks and shard loop."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(CONFIG))
    (path / "tokenizer.json").write_text("{}")
    save_file({EMBED: torch.ones(8, 4), Q: torch.eye(4)}, str(path / "model.safetensors"))
    if index is not None:
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    return path


def make_adapter(path: Path, **config: object) -> Path:
    path.mkdir(parents=True)
    stem = "base_model.model.model.layers.0.self_attn.q_proj"
    weights = {f"{stem}.lora_A.weight": torch.ones(2, 4), f"{stem}.lora_B.weight": torch.ones(4, 2)}
    save_file(weights, str(path / "adapter_model.safetensors"))
    full = {"r": 2, "lora_alpha": 4, "base_model_name_or_path": "x", **config}
    (path / "adapter_config.json").write_text(json.dumps(full))
    return path


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` with its bytes (links as their target): a before/after snapshot."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file():
            out[key] = p.read_bytes()
        else:
            out[key] = "dir"
    return out


def test_clean_base_merges(work: Path) -> None:
    merged = tke.merge(make_base(work / "base"), make_adapter(work / "a"), work / "m")
    assert sorted(p.name for p in merged.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]


@pytest.mark.parametrize(
    "shard", ["../x/model.safetensors", "ABSOLUTE", "sub/model.safetensors", "..", ""]
)
def test_index_shard_outside_the_base_is_refused(work: Path, shard: str) -> None:
    base = work / "base"
    if shard == "ABSOLUTE":  # the base's own shard, by absolute path: once truncated it, SIGBUS
        shard = str((base / "model.safetensors").absolute())
    make_base(base, index={EMBED: "model.safetensors", Q: shard})
    adapter = make_adapter(work / "a")
    before = tree(work)
    with pytest.raises(tke.BaseModelError) as info:
        tke.merge(base, adapter, work / "out" / "merged")
    message = str(info.value)
    assert f"weight_map['{Q}'] is {shard!r}" in message
    assert "not a file name in the model folder" in message
    # Nothing new anywhere (no out, no staging folder, no ../x), the base untouched.
    assert tree(work) == before


def test_index_naming_a_missing_shard(work: Path) -> None:
    base = make_base(work / "base", index={EMBED: "model-00001.safetensors"})
    with pytest.raises(
        tke.BaseModelError, match=r"names model-00001\.safetensors, which is missing"
    ):
        tke.merge(base, make_adapter(work / "a"), work / "m")


def test_side_file_linking_out_of_the_base_is_refused(work: Path) -> None:
    secret = work / "shadow"
    secret.write_text("root:$6$secret")
    base = make_base(work / "base")
    (base / "tokenizer_config.json").symlink_to(secret)
    with pytest.raises(tke.BaseModelError) as info:
        tke.merge(base, make_adapter(work / "a"), work / "m")
    assert str(info.value) == (
        f"{base / 'tokenizer_config.json'} is a symbolic link to {secret}, outside the model "
        f"folder {base}; refusing to read it. Replace the link with the file itself."
    )
    assert sorted(p.name for p in work.iterdir()) == ["a", "base", "shadow"]


@pytest.mark.parametrize("which", ["model.safetensors", "config.json"])
def test_weights_or_config_linking_out_are_refused(work: Path, which: str) -> None:
    elsewhere = make_base(work / "elsewhere")
    base = make_base(work / "base")
    (base / which).unlink()
    (base / which).symlink_to(elsewhere / which)
    with pytest.raises(
        tke.BaseModelError, match=r"is a symbolic link to .*outside the model folder"
    ):
        tke.merge(base, make_adapter(work / "a"), work / "m")
    assert not (work / "m").exists()


def test_hf_cache_snapshot_links_into_blobs_are_followed(work: Path) -> None:
    repo = work / "hub" / "models--org--m"
    real = make_base(repo / "blobs")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for f in real.iterdir():
        (snapshot / f.name).symlink_to(Path("../../blobs") / f.name)
    merged = tke.merge(snapshot, make_adapter(work / "a"), work / "m")
    assert (merged / "tokenizer.json").read_text() == "{}"
    assert not (merged / "tokenizer.json").is_symlink()


def test_fifo_in_the_base_is_skipped_not_opened(work: Path) -> None:
    base = make_base(work / "base")
    os.mkfifo(base / "pipe")  # opening it would block forever
    merged = tke.merge(base, make_adapter(work / "a"), work / "m")
    assert not (merged / "pipe").exists()


def test_output_folder_that_is_a_symlink_is_refused(work: Path) -> None:
    target = work / "elsewhere"
    target.mkdir()
    (work / "m").symlink_to(target)
    with pytest.raises(tke.OutputExistsError, match="m is a symbolic link; pick a new"):
        tke.merge(make_base(work / "base"), make_adapter(work / "a"), work / "m")
    assert list(target.iterdir()) == []


# --- forged safetensors headers -----------------------------------------------------------


def forged(header: object, data: bytes = b"\0" * 16, length: int | None = None) -> bytes:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


GOOD_ENTRY = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
FORGERIES = {
    "huge header length": (
        forged(b"{}", length=2**62),
        "header length",
        "claims 4611686018427387904",
    ),
    "too short": (b"\x01\x02", "header length", "the file is only 2 bytes"),
    "not json": (forged(b"{nope"), "header", "not JSON"),
    "deeply nested": (forged(b"[" * 100_000 + b"]" * 100_000), "header", "nested too deeply"),
    "offsets out of the file": (
        forged({"t": {**GOOD_ENTRY, "data_offsets": [0, 1 << 40]}}),
        "t.data_offsets",
        "lie outside the file's 16 data bytes",
    ),
    "overlapping": (
        forged(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]},
            }
        ),
        "b.data_offsets",
        "overlaps the tensor before it",
    ),
    "bad dtype": (forged({"t": {**GOOD_ENTRY, "dtype": "F128"}}), "t.dtype", "'F128' is not"),
    "shape does not fit": (
        forged({"t": {**GOOD_ENTRY, "shape": [3, 3]}}),
        "t.data_offsets",
        "shape [3, 3] of F32 takes 36",
    ),
    "negative dim": (forged({"t": {**GOOD_ENTRY, "shape": [-1, 2]}}), "t.shape", "non-negative"),
    "data not covered": (
        forged({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}),
        "data_offsets",
        "cover 8 of the 16 data bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
@pytest.mark.parametrize("where", ["adapter", "base"])
def test_forged_safetensors_header(work: Path, case: str, where: str) -> None:
    data, field, problem = FORGERIES[case]
    base = make_base(work / "base")
    adapter = make_adapter(work / "a")
    victim = (adapter if where == "adapter" else base) / (
        "adapter_model.safetensors" if where == "adapter" else "model.safetensors"
    )
    victim.write_bytes(data)
    with pytest.raises(tke.SafetensorsFormatError) as info:
        tke.merge(base, adapter, work / "m")
    message = str(info.value)
    assert message.startswith(f"{victim} is not a valid safetensors file: header field {field!r}:")
    assert problem in message
    assert isinstance(
        info.value, tke.AdapterFormatError if where == "adapter" else tke.BaseModelError
    )
    assert sorted(p.name for p in work.iterdir()) == ["a", "base"]


# --- adapter_config.json --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"r": 0}, "r = 0 is invalid; it must be a whole number from 1 to 65536"),
        ({"r": "abc"}, "r = 'abc' is invalid"),
        ({"r": True}, "r = True is invalid"),
        ({"r": 2.5}, "r = 2.5 is invalid"),
        ({"lora_alpha": float("nan")}, "lora_alpha = nan is invalid; it must be a finite number"),
        ({"lora_alpha": float("inf")}, "lora_alpha = inf is invalid"),
        ({"lora_alpha": "8"}, "lora_alpha = '8' is invalid"),
        ({"lora_alpha": -4}, "lora_alpha = -4 is invalid"),
        ({"use_rslora": "yes"}, "use_rslora = 'yes' is invalid; it must be true or false"),
        ({"base_model_name_or_path": ["x"]}, "base_model_name_or_path = list is invalid"),
    ],
)
def test_bad_adapter_config_fields(work: Path, config: dict[str, object], expected: str) -> None:
    adapter = make_adapter(work / "a", **config)
    with pytest.raises(tke.AdapterFormatError) as info:
        tke.merge(make_base(work / "base"), adapter, work / "m")
    assert str(info.value).startswith(f"{adapter / 'adapter_config.json'}: {expected}")
    assert not (work / "m").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"r": 2,\n  "lora_alpha": }', "adapter_config.json:2: not valid JSON (Expecting value)"),
        ("[" * 100_000, "adapter_config.json: not a readable JSON config (nested too deeply)"),
        ("[2]", "adapter_config.json: expected a JSON object, got list"),
    ],
)
def test_unreadable_adapter_config(work: Path, text: str, expected: str) -> None:
    adapter = make_adapter(work / "a")
    (adapter / "adapter_config.json").write_text(text)
    with pytest.raises(tke.AdapterFormatError) as info:
        tke.load_adapter(adapter)
    assert str(info.value).startswith(f"{adapter}/{expected}")


def test_nan_adapter_tensor_is_refused(work: Path) -> None:
    adapter = make_adapter(work / "a")
    stem = "base_model.model.model.layers.0.self_attn.q_proj"
    bad = {
        f"{stem}.lora_A.weight": torch.full((2, 4), float("nan")),
        f"{stem}.lora_B.weight": torch.ones(4, 2),
    }
    save_file(bad, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(tke.AdapterFormatError, match=f"tensor '{stem}.lora_A.weight' holds NaN"):
        tke.merge(make_base(work / "base"), adapter, work / "m")


def test_cli_reports_an_attack_as_one_line(work: Path) -> None:
    base = make_base(work / "base", index={Q: "../evil.safetensors"})
    adapter = make_adapter(work / "a")
    args = ["export", str(adapter), "--format", "merged", "--base-model", str(base)]
    result = CliRunner().invoke(group, [*args, "--out", str(work / "m"), "--no-progress"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "weight_map" in lines[0]
    assert "Traceback" not in result.output
    assert not (work / "evil.safetensors").exists() and not (work / "m").exists()


def test_full_disk_during_a_merge_is_one_error_and_nothing_is_left(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import importlib

    shards = importlib.import_module("tinkerkit.export.shards")

    def full(*args: object, **kw: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards, "write_safetensors", full)
    monkeypatch.setattr("tinkerkit.export.merging.write_safetensors", full)
    base, adapter = make_base(work / "base"), make_adapter(work / "a")
    args = ["export", str(adapter), "--format", "merged", "--base-model", str(base)]
    result = CliRunner().invoke(group, [*args, "--out", str(work / "m"), "--no-progress"])
    assert result.exit_code == 1
    assert result.output == (
        f"error: Writing {work / 'm'} failed: the disk is full (No space left on device); "
        "nothing was kept. Free some space or write somewhere else (--out).\n"
    )
    assert sorted(p.name for p in work.iterdir()) == ["a", "base"]
