"""Extract a tar archive without trusting it.

Every member is checked *before* anything is written, by tarfile's own ``data``
extraction filter (PEP 706: no special files, nothing outside the output folder, no
owners) made stricter: only regular files and folders, no links of either kind, no
absolute names (the filter would strip the ``/``; we refuse), no ``..`` components, no
duplicate names, and caps on sizes (per member, in total, member count). A refusal is an
``UnsafeArchiveError`` naming the member. ``extractall`` then writes the files through
the same filter, with mode 0644, into a temporary folder next to the target that is
renamed into place at the end: a failure leaves neither a half-extracted folder nor
anything outside it.
"""

from __future__ import annotations

import functools
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


# What each refusal of tarfile's data filter means, in our error's words.
_FILTER_REFUSALS: dict[type[tarfile.FilterError], str] = {
    tarfile.SpecialFileError: "is a device file, FIFO or other special file",
    tarfile.AbsolutePathError: "has an absolute path",
    tarfile.OutsideDestinationError: "would land outside the output folder",
}


def check_member(archive: str, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """``member`` as it will be written into ``dest``, or ``UnsafeArchiveError`` saying why not.

    Usable as ``extractall``'s ``filter`` (with ``archive`` bound): tarfile's ``data``
    filter, refusing links and names it would rewrite, and giving files mode 0644.
    """
    name = member.name
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise UnsafeArchiveError(archive, name, f"is a {kind} link (to {member.linkname!r})")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "has a '..' component (path traversal)")
    try:
        filtered = tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        problem = _FILTER_REFUSALS.get(type(exc), f"is refused by tarfile's data filter ({exc})")
        raise UnsafeArchiveError(archive, name, problem) from None
    except ValueError:  # a NUL in a pax name
        raise UnsafeArchiveError(archive, name, "has an invalid name") from None
    if filtered.name != name:
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    if not parts:
        raise UnsafeArchiveError(archive, name, "names the archive root")
    return filtered.replace(mode=0o644, deep=False) if filtered.isfile() else filtered


def check_members(archive: str, members: list[tarfile.TarInfo], limits: Limits, dest: str) -> int:
    """Validate every member for extraction into ``dest``; return the bytes the files take."""
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(
            archive,
            members[limits.max_members].name,
            f"is beyond the cap of {limits.max_members} members",
        )
    seen: dict[PurePosixPath, bool] = {}
    total = 0
    for member in members:
        check_member(archive, member, dest)
        path = PurePosixPath(member.name)
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
        total = check_members(label, members, limits, str(out_dir))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out_dir.parent).free
        if total > free:
            raise UnsafeArchiveError(
                label, "<archive>", f"needs {total} bytes but only {free} are free"
            )
        staged = staged_folder(out_dir, prefix=f".{out_dir.name}.extract-", publish=publish)
        with staged as tmp:
            try:
                tar.extractall(tmp, members, filter=functools.partial(check_member, label))
            except tarfile.ReadError as exc:
                raise UnsafeArchiveError(label, "<archive>", f"is truncated ({exc})") from None
    return out_dir
