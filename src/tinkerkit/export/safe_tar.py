"""Extract a tar archive without trusting it.

Every member is checked *before* anything is written: only regular files and folders
with relative paths that stay inside the output folder are accepted; symlinks, hard
links, devices, FIFOs, absolute paths, ``..`` components, duplicate names and absurd
sizes (per member, in total, member count) are refused with an ``UnsafeArchiveError``
naming the member. Files are then written by us (never ``extractall``), with plain
permissions and no owners, into a temporary folder next to the target, which is
renamed into place at the end: a failure leaves neither a half-extracted folder nor
anything outside it.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tinkerkit.atomic import staged_folder
from tinkerkit.export.errors import UnsafeArchiveError
from tinkerkit.export.outputs import check_out_dir, publish

GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Caps that make a decompression bomb or a corrupt header fail early.

    Example:
        >>> Limits(max_member_bytes=1 << 20).max_member_bytes
        1048576
    """

    max_member_bytes: int = 64 * GiB
    max_total_bytes: int = 256 * GiB
    max_members: int = 10_000


def check_member(archive: str, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's safe relative path, or ``UnsafeArchiveError`` saying what is wrong."""
    name = member.name
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise UnsafeArchiveError(archive, name, f"is a {kind} link (to {member.linkname!r})")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchiveError(archive, name, "is a device file or FIFO")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(archive, name, f"has an unsupported type ({member.type!r})")
    if not name or "\x00" in name:
        raise UnsafeArchiveError(archive, name, "has an empty or invalid name")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    path = PurePosixPath(name.replace("\\", "/"))
    if ".." in path.parts:
        raise UnsafeArchiveError(archive, name, "has a '..' component (path traversal)")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise UnsafeArchiveError(archive, name, "names the archive root")
    return PurePosixPath(*parts)


def check_members(archive: str, members: list[tarfile.TarInfo], limits: Limits) -> int:
    """Validate every member; return the total bytes the files would take."""
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(
            archive,
            members[limits.max_members].name,
            f"is beyond the cap of {limits.max_members} members",
        )
    seen: dict[PurePosixPath, bool] = {}
    total = 0
    for member in members:
        path = check_member(archive, member)
        if member.size < 0 or member.size > limits.max_member_bytes:
            raise UnsafeArchiveError(
                archive,
                member.name,
                f"is {member.size} bytes, over the cap of {limits.max_member_bytes}",
            )
        total += member.size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(
                archive,
                member.name,
                f"takes the total over the cap of {limits.max_total_bytes} bytes",
            )
        if path in seen and not (member.isdir() and seen[path]):
            raise UnsafeArchiveError(
                archive, member.name, "appears twice (it would overwrite a file)"
            )
        for parent in path.parents:
            if seen.get(parent) is False:
                raise UnsafeArchiveError(archive, member.name, "lies under a file of the same name")
        seen[path] = member.isdir()
    return total


def safe_extract(
    archive: Path | str,
    out_dir: Path | str,
    *,
    limits: Limits | None = None,
    name: str | None = None,
) -> Path:
    """Extract ``archive`` (tar, optionally gzip/bz2/xz) into ``out_dir``; returns ``out_dir``.

    ``out_dir`` must not exist or be empty. Raises ``UnsafeArchiveError`` (nothing
    written) for any member that is not a plain file or folder inside ``out_dir``, and
    for an archive with no members at all (a file of zeros reads as an empty tar).
    ``name`` is how errors call the archive (default: its path).

    Example:
        >>> safe_extract("weights.tar", "extracted_weights")
        PosixPath('extracted_weights')
    """
    archive, out_dir, limits = Path(archive), Path(out_dir), limits or Limits()
    check_out_dir(out_dir)
    label = name or str(archive)
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by the `with` below)
    except (tarfile.TarError, OSError) as exc:
        raise UnsafeArchiveError(
            label, "<archive>", f"cannot be read as a tar archive ({exc})"
        ) from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise UnsafeArchiveError(
                label, "<archive>", f"is truncated or corrupt ({exc})"
            ) from None
        if not members:
            raise UnsafeArchiveError(
                label,
                "<archive>",
                "holds no files: it is empty, or not a tar at all (a file that starts with "
                "zeros reads as an empty tar)",
            )
        total = check_members(label, members, limits)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out_dir.parent).free
        if total > free:
            raise UnsafeArchiveError(
                label, "<archive>", f"needs {total} bytes but only {free} are free"
            )
        staged = staged_folder(out_dir, prefix=f".{out_dir.name}.extract-", publish=publish)
        with staged as tmp:
            for member in members:
                _write_member(tar, member, tmp, label)
    return out_dir


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, label: str) -> None:
    target = root.joinpath(*check_member(label, member).parts)
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        raise UnsafeArchiveError(label, member.name, "has no readable data")
    written = 0
    # "xb": never follow or replace something already there (belt and braces).
    with source, open(target, "xb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)
            if written > member.size:
                raise UnsafeArchiveError(label, member.name, "holds more data than its header says")
            out.write(chunk)
    if written != member.size:
        raise UnsafeArchiveError(
            label, member.name, f"is truncated ({written} of {member.size} bytes)"
        )
    os.chmod(target, 0o644)
