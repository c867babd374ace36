"""Getting data sets and checkpoints onto the machine: stream, resume, check, extract safely.

``install`` puts a data set under ``$SOFTMOA_HOME/data/<name>``: from its public archive
(streamed to ``downloads/<file>.part``, resumed with an HTTP range request, SHA-256 checked
when known, deleted once installed) or from a local archive or folder (``--from``, the
offline route). Archives extract into a staging folder beside the target: entries with
absolute paths or ``..``, links pointing outside, devices and more than ``max_bytes`` of
content are refused, and the staging folder is removed, so nothing is ever written outside
it. The data set root found inside is verified, then renamed into place.

``install_checkpoint`` gets an AST checkpoint through huggingface_hub (its cache, ``HF_HOME``
and ``HF_HUB_OFFLINE`` apply) or copies a local one to ``$SOFTMOA_HOME/checkpoints/<name>``.

Progress: ``progress(phase, done, total)`` with phase 'download', 'extract' or 'copy', byte
counts, ``total`` None when unknown.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from http.client import HTTPException
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ..errors import SoftmoaError
from .paths import checkpoints_dir, data_dir, downloads_dir
from .spec import DatasetSpec

Progress = Callable[[str, int, "int | None"], None]
BLOCK = 1 << 20
TIMEOUT_S = 30
MIN_LIMIT = 1 << 28  # 256 MiB: the extracted-size bound of any archive at least
RATIO_LIMIT = 20  # and otherwise 20 times the archive (audio barely compresses)
INSTALLED = ".softmoa-installed.json"
CHECKPOINTS = {"ast-audioset": "MIT/ast-finetuned-audioset-10-10-0.4593"}
CHECKPOINT_FILES = ["config.json", "*.safetensors", "pytorch_model.bin"]


@dataclass(frozen=True)
class Installed:
    """Outcome of ``install``: the data set root, its clip count and whether it was already there."""

    name: str
    root: Path
    clips: int
    already: bool


def _none(phase: str, done: int, total: int | None) -> None:
    pass


# --- streaming download ------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, sha256: str | None = None, progress: Progress = _none) -> Path:
    """Stream ``url`` to ``destination``, resuming ``destination.part`` left by an earlier try.

    The file appears under its final name only when complete (and its SHA-256 matches).
    """
    part = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not destination.exists():
        _stream(url, part, progress)
        os.replace(part, destination)
    if sha256 is not None and (actual := sha256_of(destination)) != sha256:
        destination.unlink()
        raise SoftmoaError(f"{destination.name}: SHA-256 {actual} differs from the expected {sha256}; the file was "
                           "deleted, run again to download it afresh")
    return destination


def _stream(url: str, part: Path, progress: Progress) -> None:
    """Append the rest of ``url`` to ``part`` (an HTTP range request when it has bytes already)."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "softmoa", **({"Range": f"bytes={start}-"} if start else {})}
    done, total = start, None
    try:
        with urlopen(Request(url, headers=headers), timeout=TIMEOUT_S) as response:
            if start and response.status != 206:  # the server ignored the range: start over
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            with open(part, "ab" if done else "wb") as handle:
                while block := response.read(BLOCK):
                    handle.write(block)
                    done += len(block)
                    progress("download", done, total)
    except HTTPError as error:
        if error.code == 416:  # nothing left to send: the part is complete
            return
        raise SoftmoaError(f"cannot download {url}: HTTP {error.code} {error.reason}; try again later "
                           "or install a copy with --from PATH") from None
    except (URLError, OSError, HTTPException) as error:
        reason = getattr(error, "reason", None) or error or type(error).__name__
        if done > start:
            raise SoftmoaError(f"{url}: the download broke off after {done:,} bytes ({reason}); "
                               "run the same command again to resume") from None
        raise SoftmoaError(f"cannot download {url} ({reason}); no network? Fetch the archive on another "
                           "machine and install it with --from PATH") from None
    if total is not None and done != total:
        raise SoftmoaError(f"{url}: the download stopped at {done:,} of {total:,} bytes; "
                           "run the same command again to resume")


# --- safe extraction ---------------------------------------------------------------------


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
                                   "if the archive is genuine, extract it yourself and pass the folder with --from")
            out.write(block)
    return written


def extract(archive: Path, target: Path, max_bytes: int | None = None, progress: Progress = _none) -> None:
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
            raise SoftmoaError(f"{archive}: not a zip or tar archive; pass an archive or an extracted folder to --from")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        shutil.rmtree(target, ignore_errors=True)
        raise SoftmoaError(f"{archive}: cannot extract ({error}); if the archive is damaged, download it again") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _check_room(archive: Path, target: Path, declared: int, limit: int) -> None:
    if declared > limit:
        raise SoftmoaError(f"{archive}: refused, it declares {declared:,} bytes of content, above the bound of "
                           f"{limit:,}; if it is genuine, extract it yourself and pass the folder with --from")
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


# --- data sets ---------------------------------------------------------------------------


def _copy_folder(source: Path, target: Path, progress: Progress) -> None:
    """Copy the files of ``source`` (following links) into the new folder ``target``."""
    files = [f for f in sorted(source.rglob("*")) if f.is_file()]
    total, done = sum(f.stat().st_size for f in files), 0
    target.mkdir(parents=True)
    for file in files:
        destination = target / file.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
        done += file.stat().st_size
        progress("copy", done, total)


def install(spec: DatasetSpec, source: Path | None = None, *, force: bool = False, home: Path | None = None,
            sha256: str | None = None, progress: Progress = _none) -> Installed:
    """Install ``spec`` under ``$SOFTMOA_HOME/data/<name>`` from its public archive or ``source``.

    ``source`` is a local archive or a folder holding a copy (the data set root may be nested
    a few levels down). Without ``force`` an installed copy is left as it is.
    """
    target = data_dir(spec.name, home)
    if not force and target.is_dir() and (root := spec.find_root(target)) is not None:
        record = root / INSTALLED
        clips = json.loads(record.read_text())["clips"] if record.is_file() else len(spec.scan(root).paths)
        return Installed(spec.name, root, clips, already=True)
    if source is None and spec.generate is not None:
        return _generated(spec, target)
    if source is None and spec.source is None:
        raise SoftmoaError(spec.obtain or f"{spec.name} has no public archive; install a copy with --from PATH")
    staging = target.with_name(f".{spec.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        archive = source
        if source is None:
            archive = fetch(spec.source.url, downloads_dir(home) / spec.source.filename,
                            sha256 or spec.source.sha256, progress)
        elif not source.exists():
            raise SoftmoaError(f"--from {source}: no such file or folder")
        elif sha256 is not None and source.is_file() and sha256_of(source) != sha256:
            raise SoftmoaError(f"--from {source}: its SHA-256 differs from --sha256 {sha256}; check the file")
        root = _unpack(spec, archive, staging, progress)
        clips = spec.verify(root)
        (root / INSTALLED).write_text(json.dumps({"name": spec.name, "source": str(source or spec.source.url),
                                                  "clips": len(clips.paths)}) + "\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root, target)
        if source is None:
            archive.unlink()  # the extracted copy is what counts; no second copy of gigabytes
        return Installed(spec.name, target, len(clips.paths), already=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(spec: DatasetSpec, archive: Path, staging: Path, progress: Progress) -> Path:
    """Copy a folder's data set root, or extract an archive, into ``staging``; the root found there."""
    if archive.is_dir():
        found = spec.find_root(archive)
        if found is None:
            raise SoftmoaError(f"--from {archive}: no {spec.marker} in it or its sub-folders; "
                               f"is this a copy of {spec.title}?")
        _copy_folder(found, staging, progress)
        return staging
    extract(archive, staging, progress=progress)
    root = spec.find_root(staging)
    if root is None:
        raise SoftmoaError(f"{archive}: no {spec.marker} inside; is this an archive of {spec.title}?")
    return root


def _generated(spec: DatasetSpec, target: Path) -> Installed:
    """Write a procedural data set into ``target`` (files already right are kept)."""
    spec.generate(target)
    root = spec.find_root(target)
    if root is None:
        raise SoftmoaError(f"{spec.name}: generation wrote no {spec.marker} into {target}")
    return Installed(spec.name, root, len(spec.verify(root).paths), already=False)


def installed_root(spec: DatasetSpec, home: Path | None = None) -> Path:
    """Root of the data set: its fixed location (users' data) or its installed copy."""
    if spec.location is not None:
        return spec.location
    folder = data_dir(spec.name, home)
    root = spec.find_root(folder) if folder.is_dir() else None
    if root is None and spec.generate is not None:
        root = _generated(spec, folder).root
    if root is None:
        how = f"softmoa download {spec.name}" + (" --from PATH" if spec.source is None else " (or --from PATH)")
        raise SoftmoaError(f"{spec.name} is not installed in {folder}; run: {how}")
    return root


# --- checkpoints -------------------------------------------------------------------------


def install_checkpoint(name: str, source: Path | None = None, *, force: bool = False,
                       home: Path | None = None) -> Path:
    """Get checkpoint ``name`` (``CHECKPOINTS``): from the Hugging Face hub through its cache,
    or, with ``source`` (a model folder or ``.pth`` file), copied to ``checkpoints/<name>``.
    Returns the folder (or file) to pass as ``--checkpoint``."""
    repo = CHECKPOINTS[name]
    if source is not None:
        return _copy_checkpoint(name, source, force, home)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, allow_patterns=CHECKPOINT_FILES, force_download=force))
    except Exception as error:  # hub errors come in many types; each means "not reachable, not cached"
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise SoftmoaError(f"{repo}: not reachable on the Hugging Face hub and not in its cache ({reason}); with no "
                           f"network, copy the model folder (config.json, model.safetensors) here and run: "
                           f"softmoa download {name} --from PATH") from None


@dataclass(frozen=True)
class CheckpointState:
    """A checkpoint ``softmoa download`` knows: what it is, where it comes from, where it is here
    (None: not here)."""

    name: str
    title: str
    source: str
    found: str | None


def checkpoint_states(home: Path | None = None) -> list[CheckpointState]:
    """Every checkpoint ``download`` installs and the embedded one the package ships, with
    whether each is here: a copy under ``$SOFTMOA_HOME/checkpoints/`` or in the Hugging Face cache
    (looked up offline), the embedded one when its weights match their record."""
    from huggingface_hub import try_to_load_from_cache

    states = []
    for name, repo in CHECKPOINTS.items():
        copy = checkpoints_dir(home) / name
        cached = try_to_load_from_cache(repo, "config.json")
        found = str(copy) if copy.exists() else "Hugging Face cache" if isinstance(cached, str) else None
        states.append(CheckpointState(name, "AudioSet AST (AST-base, 527 labels)", repo, found))
    from ..embedded.record import EMBEDDED, FOLDER, read_record

    try:
        read_record()
        found = "shipped in the package"
    except SoftmoaError:
        found = None
    states.append(CheckpointState(EMBEDDED, "embedded AST (width 128, 4 blocks)", str(FOLDER.name) + "/ in the "
                                  "package", found))
    return states


def _copy_checkpoint(name: str, source: Path, force: bool, home: Path | None) -> Path:
    target = checkpoints_dir(home) / name
    if source.is_dir() and not ((source / "config.json").is_file()
                                and any((source / f).is_file() for f in ("model.safetensors", "pytorch_model.bin"))):
        raise SoftmoaError(f"--from {source}: not a Hugging Face model folder (config.json and model.safetensors)")
    if source.is_file() and source.suffix not in (".pth", ".pt", ".safetensors"):
        raise SoftmoaError(f"--from {source}: not a checkpoint (.pth or a model folder)")
    if not source.exists():
        raise SoftmoaError(f"--from {source}: no such file or folder")
    if target.exists() and not force:
        return next(target.iterdir()) if source.is_file() else target
    staging = target.with_name(f".{name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if source.is_dir():
            shutil.copytree(source, staging)
        else:
            staging.mkdir(parents=True)
            shutil.copyfile(source, staging / source.name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / source.name if source.is_file() else target

