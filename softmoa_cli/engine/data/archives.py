"""Extracting a zip or tar archive safely: nothing is ever written outside the target folder.

Entries with absolute paths or ``..``, links pointing outside, devices and more than
``max_bytes`` of content are refused, and the half-extracted target is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ..errors import SoftmoaError
from .fetch import BLOCK, Progress, no_progress

MIN_LIMIT = 1 << 28  # 256 MiB: the extracted-size bound of any archive at least
RATIO_LIMIT = 20  # and otherwise 20 times the archive (audio barely compresses)


@dataclass(frozen=True)
class Entry:
    """One archive member: ``kind`` 'file', 'dir', 'symlink', 'hardlink' or 'other'."""

    name: str
    kind: str
    size: int
    link: str = ""
    open: Callable[[], IO[bytes]] | None = None


def _tar_entries(archive: tarfile.TarFile) -> Iterator[Entry]:
    for member in archive:
        kind = ("file" if member.isfile() else "dir" if member.isdir() else "symlink" if member.issym()
                else "hardlink" if member.islnk() else "other")
        yield Entry(member.name, kind, member.size, member.linkname, lambda m=member: archive.extractfile(m))


def _zip_entries(archive: zipfile.ZipFile) -> Iterator[Entry]:
    for info in archive.infolist():
        if stat.S_ISLNK(info.external_attr >> 16):
            yield Entry(info.filename, "symlink", 0, archive.read(info).decode("utf-8", "replace"))
        else:
            yield Entry(info.filename, "dir" if info.is_dir() else "file", info.file_size,
                        open=lambda i=info: archive.open(i))


def _relative(name: str, archive: Path) -> PurePosixPath:
    """A member name as a safe relative path; SoftmoaError for absolute paths and ``..``."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise SoftmoaError(f"{archive}: refused, entry {name!r} has an absolute path; the archive is unsafe")
    if ".." in path.parts:
        raise SoftmoaError(f"{archive}: refused, entry {name!r} points outside the target with '..'; "
                           "the archive is unsafe")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _inside(path: str | Path, root: Path) -> bool:
    return os.path.commonpath([os.path.realpath(path), str(root)]) == str(root)


def _write(entry: Entry, destination: Path, budget: int, archive: Path) -> int:
    """Copy one file entry; returns the bytes written, refusing past ``budget``."""
    if destination.is_symlink():  # never write through a link made by an earlier entry
        destination.unlink()
    written = 0
    with entry.open() as source, open(destination, "wb") as out:
        while block := source.read(BLOCK):
            written += len(block)
            if written > budget:
                raise SoftmoaError(f"{archive}: refused, it extracts to more than the allowed size; "
                                   "if the archive is genuine, extract it yourself and pass the folder with `source`")
            out.write(block)
    return written


def extract(archive: Path, target: Path, max_bytes: int | None = None, progress: Progress = no_progress) -> None:
    """Extract a zip or tar (gz, bz2, xz) ``archive`` into the new folder ``target``, safely.

    ``max_bytes`` bounds the extracted content (default: 20 times the archive, 256 MiB at
    least). On any refusal ``target`` is removed and a SoftmoaError says why.
    """
    limit = max_bytes if max_bytes is not None else max(MIN_LIMIT, RATIO_LIMIT * archive.stat().st_size)
    target.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                entries = list(_zip_entries(handle))
                declared = sum(entry.size for entry in entries)
                _check_room(archive, target, declared, limit)
                _extract_entries(entries, archive, target.resolve(), limit, declared, progress)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as handle:  # one streaming pass: a .tar.gz cannot seek back cheaply
                _extract_entries(_tar_entries(handle), archive, target.resolve(), limit, None, progress)
        else:
            raise SoftmoaError(f"{archive}: not a zip or tar archive; pass an archive or an extracted folder "
                               "to `source`")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        shutil.rmtree(target, ignore_errors=True)
        raise SoftmoaError(f"{archive}: cannot extract ({error}); if the archive is damaged, download it again") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _check_room(archive: Path, target: Path, declared: int, limit: int) -> None:
    if declared > limit:
        raise SoftmoaError(f"{archive}: refused, it declares {declared:,} bytes of content, above the bound of "
                           f"{limit:,}; if it is genuine, extract it yourself and pass the folder with `source`")
    free = shutil.disk_usage(target).free
    if declared > free:
        raise SoftmoaError(f"{archive}: needs {declared:,} bytes but {target} has {free:,} free; "
                           "make room or set SOFTMOA_HOME to a larger disk")


def _extract_entries(entries: Iterable[Entry], archive: Path, root: Path, limit: int, declared: int | None,
                     progress: Progress) -> None:
    done = 0
    for entry in entries:
        relative = _relative(entry.name, archive)
        if not relative.parts:
            continue
        destination = root / relative
        if not _inside(destination.parent, root):
            raise SoftmoaError(f"{archive}: refused, entry {entry.name!r} would be written through a link "
                               "to outside the target; the archive is unsafe")
        if entry.kind == "dir":
            destination.mkdir(parents=True, exist_ok=True)
        elif entry.kind == "file":
            destination.parent.mkdir(parents=True, exist_ok=True)
            done += _write(entry, destination, limit - done, archive)
            progress("extract", done, declared)
        elif entry.kind == "symlink":
            if os.path.isabs(entry.link) or not _inside(os.path.join(destination.parent, entry.link), root):
                raise SoftmoaError(f"{archive}: refused, link {entry.name!r} -> {entry.link!r} points outside the "
                                   "target; the archive is unsafe")
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(entry.link, destination)
        elif entry.kind == "hardlink":
            original = root / _relative(entry.link, archive)
            if not _inside(original, root) or not original.is_file():
                raise SoftmoaError(f"{archive}: refused, hard link {entry.name!r} -> {entry.link!r} does not name "
                                   "a file inside the target; the archive is unsafe")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, destination)
        else:
            raise SoftmoaError(f"{archive}: refused, entry {entry.name!r} is a device or pipe; the archive is unsafe")
