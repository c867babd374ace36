"""What ``softmoa download`` installs: data sets and backbone checkpoints.

``install`` puts a data set under ``$SOFTMOA_HOME/data/<name>``: from its public archive
(``fetch.py``: streamed, resumed, checked, deleted once installed) or from a local archive or
folder (``source``, the offline route). An archive extracts (``archives.py``) into a staging
folder beside the target; the data set root found inside is verified, then renamed into place.

``install_checkpoint`` gets a backbone checkpoint (``CHECKPOINTS``: the AudioSet AST, Whisper's,
wav2vec2's, HuBERT's and WavLM's released models) through huggingface_hub (its cache,
``HF_HOME`` and ``HF_HUB_OFFLINE`` apply) or copies a local one to
``$SOFTMOA_HOME/checkpoints/<name>``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import SoftmoaError
from .archives import extract
from .fetch import Progress, fetch, no_progress, sha256_of
from .paths import checkpoints_dir, data_dir, downloads_dir
from .spec import DatasetSpec

INSTALLED = ".softmoa-installed.json"


@dataclass(frozen=True)
class KnownCheckpoint:
    """A checkpoint ``download`` gets by name: its hub id and what it is."""

    repo: str
    title: str


CHECKPOINTS = {
    "ast-audioset": KnownCheckpoint("MIT/ast-finetuned-audioset-10-10-0.4593", "AudioSet AST (AST-base, 527 labels)"),
    **{f"whisper-{size}": KnownCheckpoint(f"openai/whisper-{size}", f"Whisper {size}'s encoder ({shape})")
       for size, shape in (("tiny", "4 blocks, d 384"), ("base", "6 blocks, d 512"), ("small", "12 blocks, d 768"),
                           ("medium", "24 blocks, d 1024"), ("large-v3", "32 blocks, d 1280, 128 mels"))},
    "wav2vec2-base": KnownCheckpoint("facebook/wav2vec2-base", "wav2vec 2.0 Base (12 blocks, d 768)"),
    "wav2vec2-large": KnownCheckpoint("facebook/wav2vec2-large-lv60", "wav2vec 2.0 Large, LV-60k (24 blocks, d 1024)"),
    "hubert-base": KnownCheckpoint("facebook/hubert-base-ls960", "HuBERT Base (12 blocks, d 768)"),
    "hubert-large": KnownCheckpoint("facebook/hubert-large-ll60k", "HuBERT Large (24 blocks, d 1024)"),
    "wavlm-base": KnownCheckpoint("microsoft/wavlm-base", "WavLM Base (12 blocks, d 768)"),
    "wavlm-base-plus": KnownCheckpoint("microsoft/wavlm-base-plus", "WavLM Base+ (12 blocks, d 768)"),
    "wavlm-large": KnownCheckpoint("microsoft/wavlm-large", "WavLM Large (24 blocks, d 1024)"),
}
CHECKPOINT_FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "pytorch_model.bin"]


@dataclass(frozen=True)
class Installed:
    """Outcome of ``install``: the data set root, its clip count and whether it was already there."""

    name: str
    root: Path
    clips: int
    already: bool


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
            sha256: str | None = None, progress: Progress = no_progress) -> Installed:
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
        raise SoftmoaError(spec.obtain or f"{spec.name} has no public archive; install a copy with `source` PATH")
    staging = target.with_name(f".{spec.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        archive = source
        if source is None:
            archive = fetch(spec.source.url, downloads_dir(home) / spec.source.filename,
                            sha256 or spec.source.sha256, progress)
        elif not source.exists():
            raise SoftmoaError(f"`source` {source}: no such file or folder")
        elif sha256 is not None and source.is_file() and sha256_of(source) != sha256:
            raise SoftmoaError(f"`source` {source}: its SHA-256 differs from `sha256` {sha256}; check the file")
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
            raise SoftmoaError(f"`source` {archive}: no {spec.marker} in it or its sub-folders; "
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
    if root is None:  # said by prepare, finetune, ...: download's flag, which they cannot render
        how = f"softmoa download {spec.name}" + (" --from PATH" if spec.source is None else " (or --from PATH)")
        raise SoftmoaError(f"{spec.name} is not installed in {folder}; run: {how}")
    return root


# --- checkpoints -------------------------------------------------------------------------


def install_checkpoint(name: str, source: Path | None = None, *, force: bool = False,
                       home: Path | None = None) -> Path:
    """Get checkpoint ``name`` (``CHECKPOINTS``): from the Hugging Face hub through its cache,
    or, with ``source`` (a model folder or ``.pth`` file), copied to ``checkpoints/<name>``.
    Returns the folder (or file) to pass as ``--checkpoint``."""
    repo = CHECKPOINTS[name].repo
    if source is not None:
        return _copy_checkpoint(name, source, force, home)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, allow_patterns=CHECKPOINT_FILES, force_download=force))
    except Exception as error:  # hub errors come in many types; each means "not reachable, not cached"
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise SoftmoaError(f"{repo}: not reachable on the Hugging Face hub and not in its cache ({reason}); with no "
                           f"network, copy the model folder (config.json, model.safetensors) here and run: "
                           f"softmoa download {name} `source` PATH") from None


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
    for name, known in CHECKPOINTS.items():
        copy = checkpoints_dir(home) / name
        cached = try_to_load_from_cache(known.repo, "config.json")
        found = str(copy) if copy.exists() else "Hugging Face cache" if isinstance(cached, str) else None
        states.append(CheckpointState(name, known.title, known.repo, found))
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
        raise SoftmoaError(f"`source` {source}: not a Hugging Face model folder (config.json and model.safetensors)")
    if source.is_file() and source.suffix not in (".pth", ".pt", ".safetensors"):
        raise SoftmoaError(f"`source` {source}: not a checkpoint (.pth or a model folder)")
    if not source.exists():
        raise SoftmoaError(f"`source` {source}: no such file or folder")
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

