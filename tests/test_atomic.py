"""tinkerkit.atomic: files and folders appear whole or not at all."""

from __future__ import annotations

import json
import os

import pytest

from tinkerkit.atomic import (
    atomic_path,
    atomic_text_writer,
    discard_folder,
    publish_folder,
    staged_folder,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


class Boom(Exception):
    pass


@pytest.fixture
def folder(tmp_path):
    """An empty folder of the test's own (``tmp_path`` also holds TINKERKIT_HOME)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def test_writes_create_parents_and_leave_no_temporaries(folder):
    write_bytes_atomic(folder / "a" / "b.bin", b"\x00\x01")
    write_text_atomic(folder / "a" / "c.txt", "héllo\n")
    write_json_atomic(folder / "a" / "d.json", {"z": 1, "a": [2]})
    assert (folder / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (folder / "a" / "c.txt").read_text(encoding="utf-8") == "héllo\n"
    text = (folder / "a" / "d.json").read_text()
    assert json.loads(text) == {"z": 1, "a": [2]} and text.index('"a"') < text.index('"z"')
    assert sorted(p.name for p in (folder / "a").iterdir()) == ["b.bin", "c.txt", "d.json"]


def test_existing_target_is_replaced_in_one_step(folder):
    target = folder / "f.txt"
    target.write_text("old")
    before = os.stat(target).st_ino
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert os.stat(target).st_ino != before  # a new file renamed over, not rewritten in place


def test_a_failing_writer_keeps_the_old_file_and_leaves_nothing(folder):
    target = folder / "f.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_text_writer(target) as handle:
        handle.write("half")
        raise Boom
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in folder.iterdir()] == ["f.txt"]


def test_atomic_path_is_a_name_the_block_writes(folder):
    with atomic_path(folder / "p.png") as tmp:
        assert tmp.parent == folder and tmp.name.startswith(".p.png.")
        tmp.write_bytes(b"png")
    assert (folder / "p.png").read_bytes() == b"png"
    assert [p.name for p in folder.iterdir()] == ["p.png"]


def test_unserialisable_json_leaves_nothing(folder):
    with pytest.raises(TypeError):
        write_json_atomic(folder / "x.json", {"bad": object()})
    assert list(folder.iterdir()) == []


def test_staged_folder_appears_whole(folder):
    final = folder / "out" / "model"
    with staged_folder(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".model.")
        (tmp / "a.json").write_text("{}")
        assert not final.exists()
    assert [p.name for p in final.iterdir()] == ["a.json"]
    assert [p.name for p in final.parent.iterdir()] == ["model"]


def test_staged_folder_replaces_an_empty_folder(folder):
    final = folder / "model"
    final.mkdir()
    with staged_folder(final, prefix=".build-") as tmp:
        assert tmp.name.startswith(".build-")
        (tmp / "a").write_text("x")
    assert (final / "a").read_text() == "x"


def test_staged_folder_on_error_leaves_nothing(folder):
    final = folder / "model"
    with pytest.raises(Boom), staged_folder(final) as tmp:
        (tmp / "a").write_text("x")
        raise Boom
    assert list(folder.iterdir()) == []


def test_staged_folder_never_overwrites_content(folder):
    final = folder / "model"
    final.mkdir()
    (final / "theirs").write_text("kept")
    with pytest.raises(OSError), staged_folder(final) as tmp:
        (tmp / "ours").write_text("x")
    assert [p.name for p in folder.iterdir()] == ["model"]
    assert [p.name for p in final.iterdir()] == ["theirs"]


def test_publish_folder_renames(folder):
    (folder / ".stage").mkdir()
    (folder / ".stage" / "f").write_text("x")
    publish_folder(folder / ".stage", folder / "final")
    assert (folder / "final" / "f").read_text() == "x"
    assert not (folder / ".stage").exists()


def test_discard_folder_renames_aside_then_removes(tmp_path, monkeypatch):
    parent = tmp_path / "runs"
    folder = parent / "checkpoint"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.bin").write_bytes(b"x" * 10)
    seen: list[list[str]] = []
    import shutil

    real = shutil.rmtree

    def watch(path, *args, **kwargs):
        # While the tree is being deleted, the name already answers "absent".
        seen.append(sorted(p.name for p in parent.iterdir()))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", watch)
    discard_folder(folder)
    assert len(seen) == 1 and "checkpoint" not in seen[0]
    assert seen[0][0].startswith(".trash-checkpoint-")
    assert list(parent.iterdir()) == []
