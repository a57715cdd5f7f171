"""Malicious archives are refused before anything is written, in the API and the CLI."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import tinkerkit.export as tke
from tinkerkit.cli_export import group


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file(name: str, data: bytes = b"payload") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, **attrs: object) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, None


GOOD = file("adapter_config.json", b'{"r": 8}')
MALICIOUS: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "dotdot": ([GOOD, file("../escaped.txt")], "'..' component"),
    "nested-dotdot": ([file("a/../../escaped.txt")], "'..' component"),
    "inner-dotdot": ([file("a/../inside.txt")], "'..' component"),
    "absolute": ([GOOD, file("/tmp/tinkerkit-absolute.txt")], "absolute path"),
    "symlink": ([special("link", tarfile.SYMTYPE, linkname="/etc/passwd"), GOOD], "symbolic link"),
    "hardlink": (
        [GOOD, special("hard", tarfile.LNKTYPE, linkname="adapter_config.json")],
        "hard link",
    ),
    "chardev": ([special("dev", tarfile.CHRTYPE, devmajor=1, devminor=3)], "device file"),
    "blockdev": ([special("blk", tarfile.BLKTYPE)], "device file"),
    "fifo": ([special("pipe", tarfile.FIFOTYPE)], "FIFO"),
    "duplicate": ([GOOD, GOOD], "appears twice"),
    "nul-in-name": ([file("a\x00b" + "c" * 200)], "invalid name"),  # long: kept in a pax record
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_members_are_refused(work: Path, case: str) -> None:
    members, problem = MALICIOUS[case]
    archive = make_tar(work / "bad.tar", members)
    before = snapshot(work)
    with pytest.raises(tke.UnsafeArchiveError) as info:
        tke.safe_extract(archive, work / "out")
    assert problem in str(info.value) and "bad.tar" in str(info.value)
    assert snapshot(work) == before  # nothing inside, next to, or outside the target
    assert not Path("/tmp/tinkerkit-absolute.txt").exists()


@pytest.mark.parametrize("case", ["dotdot", "symlink", "chardev"])
def test_cli_download_of_a_bad_tar_is_one_clean_error(work: Path, case: str) -> None:
    archive = make_tar(work / "bad.tar", MALICIOUS[case][0])
    before = snapshot(work.parent)
    result = CliRunner().invoke(group, ["download", str(archive), "--out", str(work / "out")])
    assert result.exit_code == 1
    assert result.output.startswith("error: Refusing to extract")
    assert "Traceback" not in result.output and not isinstance(result.exception, tke.ExportError)
    assert snapshot(work.parent) == before


@pytest.mark.parametrize(
    ("limits", "members", "problem"),
    [
        (tke.Limits(max_member_bytes=10), [file("big", b"x" * 11)], "over the cap"),
        (tke.Limits(max_total_bytes=15), [file("a", b"x" * 8), file("b", b"x" * 8)], "total"),
        (tke.Limits(max_members=2), [file(str(i)) for i in range(3)], "cap of 2 members"),
    ],
)
def test_size_caps(work: Path, limits: tke.Limits, members: list, problem: str) -> None:
    archive = make_tar(work / "big.tar", members)
    with pytest.raises(tke.UnsafeArchiveError, match=problem):
        tke.safe_extract(archive, work / "out", limits=limits)
    assert snapshot(work) == ["big.tar"]


def test_good_archive_extracts_with_plain_permissions(work: Path) -> None:
    info, data = file("sub/adapter_model.safetensors", b"\x00" * 100)
    info.mode = 0o4777  # setuid + world-writable: not carried over
    archive = make_tar(work / "ok.tar.gz", [GOOD, (info, data)])
    out = tke.download(archive, work / "out")
    assert snapshot(out) == ["adapter_config.json", "sub", "sub/adapter_model.safetensors"]
    assert oct(os.stat(out / "sub/adapter_model.safetensors").st_mode & 0o7777) == "0o644"
    assert sorted(os.listdir(work)) == ["ok.tar.gz", "out"]  # no temp folder left


@pytest.mark.parametrize(
    "setup",
    [
        lambda p: p.write_bytes(b"not a tar at all" * 100),
        lambda p: p.write_bytes(make_tar(p, [file("a", b"x" * 5000)]).read_bytes()[:1000]),
    ],
    ids=["garbage", "truncated"],
)
def test_unreadable_archives(work: Path, setup: Callable[[Path], object]) -> None:
    archive = work / "x.tar"
    setup(archive)
    with pytest.raises(tke.UnsafeArchiveError):
        tke.safe_extract(archive, work / "out")
    assert snapshot(work) == ["x.tar"]


def test_non_empty_output_is_not_touched(work: Path) -> None:
    archive = make_tar(work / "ok.tar", [GOOD])
    (work / "out").mkdir()
    (work / "out" / "keep.txt").write_text("mine")
    with pytest.raises(tke.OutputExistsError, match="not empty"):
        tke.download(archive, work / "out")
    assert snapshot(work / "out") == ["keep.txt"]
