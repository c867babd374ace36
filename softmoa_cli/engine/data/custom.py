"""Users' own data: a folder with one sub-folder per class, or a CSV/TSV manifest.

Folder: ``root/<class>/**/<clip>.{wav,flac,ogg,mp3,aiff}``; classes are the sub-folder names.
Manifest: a header with ``path`` and ``label`` columns, optional ``split`` (train / valid /
test) and ``fold`` (1..k); ``path`` relative to the manifest's folder, or absolute; ``.tsv``
files are tab-separated. A ``labels`` column instead of ``label`` holds label sets separated
by ``;`` (``clips/a.wav,dog;rain,train``): a multi-label data set. With folds and no split every clip is 'train' (a k-fold set). With
neither, the split is drawn per class with ``seed``: 10 % test, 10 % valid (one of each when
a class has 3 clips or more), the same on every run.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path

import numpy as np

from ..errors import SoftmoaError
from .spec import SPLITS, Clips, DatasetSpec, integer, make_clips, read_table

AUDIO = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
HELD_OUT = 0.1  # of each class, for test and for valid each, when no split is given
ALIASES = {"training": "train", "val": "valid", "validation": "valid", "dev": "valid", "testing": "test"}


def seeded_split(paths: list[str], labels: list[str], seed: int) -> list[str]:
    """Per class, a seeded ``HELD_OUT`` share to 'test' and one to 'valid', the rest 'train'."""
    split = ["train"] * len(paths)
    for label in sorted(set(labels)):
        members = sorted((p, i) for i, (p, l) in enumerate(zip(paths, labels)) if l == label)
        order = np.random.default_rng([seed, zlib.crc32(label.encode())]).permutation(len(members))
        held = max(1, round(HELD_OUT * len(members))) if len(members) >= 3 else 0
        for rank, k in enumerate(order[:2 * held]):
            split[members[k][1]] = "test" if rank < held else "valid"
    return split


def scan_folder(root: Path, seed: int = 0) -> Clips:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    pairs = [(f.relative_to(root).as_posix(), d.name) for d in classes
             for f in sorted(d.rglob("*")) if f.suffix.lower() in AUDIO and f.is_file()]
    if not pairs:
        raise SoftmoaError(f"{root}: no audio found in class sub-folders ({', '.join(AUDIO)}); "
                           "use one sub-folder per class or a CSV manifest with path,label")
    paths, labels = [p for p, _ in pairs], [l for _, l in pairs]
    return make_clips(list(zip(paths, labels, seeded_split(paths, labels, seed), [0] * len(paths))))


def _split_value(row: dict[str, str], path: Path) -> str:
    value = row["split"].strip().lower()
    value = ALIASES.get(value, value)
    if value not in SPLITS:
        raise SoftmoaError(f"{path}: split {row['split']!r} for {row['path']}; use train, valid or test")
    return value


def scan_manifest(manifest: Path, seed: int = 0) -> Clips:
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" else ","
    multi = "labels" in read_table(manifest, [], delimiter, header_only=True)
    table = read_table(manifest, ["path", "labels" if multi else "label"], delimiter)
    if not table:
        raise SoftmoaError(f"{manifest}: no rows; list one clip per line as path,label")
    columns = table[0].keys()
    paths = [row["path"].strip() for row in table]
    if multi:  # label sets; the split draws by each clip's first label
        labels = [tuple(sorted({name.strip() for name in row["labels"].split(";") if name.strip()})) for row in table]
        firsts = [names[0] if names else "" for names in labels]
    else:
        labels = firsts = [row["label"].strip() for row in table]
    folds = [integer(row, "fold", manifest) for row in table] if "fold" in columns else [0] * len(table)
    if "split" in columns:
        split = [_split_value(row, manifest) for row in table]
    elif "fold" in columns:
        split = ["train"] * len(table)
    else:
        split = seeded_split(paths, firsts, seed)
    return make_clips(list(zip(paths, labels, split, folds)))


def custom_spec(path: Path, seed: int = 0) -> DatasetSpec:
    """The spec of a user's folder or manifest; its name joins the folder or file name and a
    hash of the absolute path, so two data sets never share a cache. Its ``max_length`` is
    derived from the clip durations (``lengths.feature_config``)."""
    path = path.absolute()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    name = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', path.stem)}-{digest}"
    if path.is_dir():
        return DatasetSpec(name, f"folder {path}", ".", lambda root: scan_folder(root, seed), None,
                           location=path)
    if path.suffix.lower() in (".csv", ".tsv"):
        return DatasetSpec(name, f"manifest {path}", path.name, lambda root: scan_manifest(root / path.name, seed),
                           None, location=path.parent)
    raise SoftmoaError(f"{path}: not a folder or a .csv/.tsv manifest; give one of those or a data set name")
