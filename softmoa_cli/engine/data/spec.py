"""What every data set module declares: a ``DatasetSpec`` (its layout, how its clips are
listed, its default ``max_length`` and where to get it), the ``Clips`` a scan returns, and the
table readers the scans share. The registry of names is ``registry``."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SoftmoaError
from ..task import MULTI, SINGLE, Task, task_of

SPLITS = ("train", "valid", "test")
SEARCH_DEPTH = 3  # how deep an extracted archive may nest the data set root


@dataclass(frozen=True)
class Clips:
    """The clips of a data set in a fixed order, as its metadata lists them.

    ``paths`` are POSIX paths relative to the data set root; ``labels`` ids into
    ``label_names`` as the task holds them (``engine/task.py``): ``[n]`` int64 (single-label), or
    ``[n, classes]`` uint8 multi-hot rows of label sets (multi-label; a row may be empty: such a
    clip is reported as bad); ``split [n]`` 'train' / 'valid' / 'test' (k-fold sets: all 'train',
    the fold decides); ``fold [n]`` int64, 1..k, or 0 for a set without folds.
    """

    paths: list[str]
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray
    fold: np.ndarray

    @property
    def task(self) -> Task:
        return task_of(self.labels)

    def label_text(self, row: int) -> str:
        """The label (or ``;``-joined label set) of clip ``row``, as a manifest writes it."""
        [ids] = self.task.encode(self.labels[row:row + 1])
        return ";".join(self.label_names[i] for i in ids)


def make_clips(rows: Sequence[tuple[str, str | tuple[str, ...], str, int]],
               label_names: Sequence[str] | None = None) -> Clips:
    """``(path, label, split, fold)`` rows -> Clips; labels default to the sorted names. A label
    given as a tuple of names is a label set: then every row is one, and the clips are
    multi-label (multi-hot rows)."""
    task = MULTI if any(isinstance(row[1], tuple) for row in rows) else SINGLE
    sets = [row[1] if isinstance(row[1], tuple) else (row[1],) for row in rows]
    names = list(label_names) if label_names is not None else sorted({name for names in sets for name in names})
    ids = {name: i for i, name in enumerate(names)}
    return Clips(paths=[row[0] for row in rows], labels=task.decode([[ids[n] for n in one] for one in sets], len(names)),
                 label_names=names, split=np.array([row[2] for row in rows], dtype="<U5"),
                 fold=np.array([row[3] for row in rows], dtype=np.int64))


def read_table(path: Path, required: Sequence[str], delimiter: str = ",", header_only: bool = False):
    """Rows of a CSV/TSV file with a header (``header_only``: its column names); a SoftmoaError
    names the file and any missing column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            if header_only:
                return list(reader.fieldnames or [])
            missing = [column for column in required if column not in (reader.fieldnames or [])]
            if missing:
                raise SoftmoaError(f"{path}: missing column(s) {', '.join(missing)} (found: "
                                   f"{', '.join(reader.fieldnames or []) or 'no header'}); fix the header")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SoftmoaError(f"{path}: cannot read this table ({error}); check the file") from None


def integer(row: dict[str, str], column: str, path: Path) -> int:
    """``row[column]`` as an int; a SoftmoaError names the file, the column and the value."""
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise SoftmoaError(f"{path}: column {column} holds {row[column]!r}, not a whole number; fix the table") from None


@dataclass(frozen=True)
class Source:
    """A public archive: ``url``, the file name to keep it under, its SHA-256 when known."""

    url: str
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: layout, defaults and origin.

    ``marker``: a path relative to the root that identifies it (found inside an extracted
    archive up to ``SEARCH_DEPTH`` levels down). ``scan(root) -> Clips``. ``max_length``:
    default input frames (10 ms each). ``source``: where ``download`` gets it (None: it cannot
    be fetched anonymously; ``obtain`` says how to get it). ``clips``: the full set's size.
    ``location``: a fixed root (users' data) instead of ``$SOFTMOA_HOME/data/<name>``.
    ``generate(folder)``: a procedural data set writes itself into ``folder`` on first use.
    """

    name: str
    title: str
    marker: str
    scan: Callable[[Path], Clips]
    max_length: int | None  # None: derived from the clips (users' data)
    source: Source | None = None
    obtain: str = ""
    clips: int | None = None
    location: Path | None = None
    generate: Callable[[Path], None] | None = None

    def find_root(self, folder: Path) -> Path | None:
        """The shallowest folder at or under ``folder`` that holds ``marker``, or None."""
        level = [Path(folder)]
        for _ in range(SEARCH_DEPTH + 1):
            for candidate in sorted(level):
                if (candidate / self.marker).exists():
                    return candidate
            level = [child for parent in level for child in parent.iterdir()
                     if child.is_dir() and not child.is_symlink() and not child.name.startswith(".")]
        return None

    def verify(self, root: Path) -> Clips:
        """Scan ``root`` and check that every listed clip exists; SoftmoaError otherwise."""
        clips = self.scan(root)
        if not clips.paths:
            raise SoftmoaError(f"{self.name}: no clips found in {root}; is this a copy of {self.title}?")
        missing = [path for path in clips.paths if not (root / path).is_file()]
        if missing:
            raise SoftmoaError(f"{self.name}: {len(missing)} of {len(clips.paths)} listed clips are missing in "
                               f"{root} (first: {missing[0]}); the copy is incomplete, download it again with `force`")
        return clips
