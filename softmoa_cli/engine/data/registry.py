"""The data set registry: what every data set module declares, and how names are resolved.

A data set is a ``DatasetSpec``: its layout (a marker file at its root and a ``scan`` that
lists the clips from the metadata), its default ``max_length`` and where to get it. Built-ins
live in one module each (``esc50``, ``us8k``, ``speechcommands``, ``fsc``, ``fsdd``,
``fsd50k``; ``synth_sets`` defines the procedural sets) and define ``SPEC`` (or ``SPECS``). Outside packages add data sets through the ``softmoa.datasets`` entry-point
group: the entry point names a callable ``register(registry)`` that calls
``registry.register(name, spec, builtin=False)``. A path (a folder of class sub-folders or a
CSV/TSV manifest) resolves to a user's data set (``custom``).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np

from ..errors import SoftmoaError
from ..registry import Registry

GROUP = "softmoa.datasets"
BUILTINS = ("esc50", "us8k", "speechcommands", "fsc", "fsdd", "fsd50k", "synth_sets")
SPLITS = ("train", "valid", "test")
SEARCH_DEPTH = 3  # how deep an extracted archive may nest the data set root


@dataclass(frozen=True)
class Clips:
    """The clips of a data set in a fixed order, as its metadata lists them.

    ``paths`` are POSIX paths relative to the data set root; ``labels`` ids into
    ``label_names``: ``[n]`` int64 (single-label), or ``[n, classes]`` uint8 multi-hot rows of
    label sets (multi-label; a row may be empty: such a clip is reported as bad); ``split [n]``
    'train' / 'valid' / 'test' (k-fold sets: all 'train', the fold decides); ``fold [n]`` int64,
    1..k, or 0 for a set without folds.
    """

    paths: list[str]
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray
    fold: np.ndarray

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def label_text(self, row: int) -> str:
        """The label (or ``;``-joined label set) of clip ``row``, as a manifest writes it."""
        if self.multi_label:
            return ";".join(self.label_names[i] for i in np.flatnonzero(self.labels[row]))
        return self.label_names[self.labels[row]]


def make_clips(rows: Sequence[tuple[str, str | tuple[str, ...], str, int]],
               label_names: Sequence[str] | None = None) -> Clips:
    """``(path, label, split, fold)`` rows -> Clips; labels default to the sorted names. A label
    given as a tuple of names is a label set: then every row is one, and the clips are
    multi-label (multi-hot rows)."""
    multi = any(isinstance(row[1], tuple) for row in rows)
    sets = [row[1] if isinstance(row[1], tuple) else (row[1],) for row in rows]
    names = list(label_names) if label_names is not None else sorted({name for names in sets for name in names})
    ids = {name: i for i, name in enumerate(names)}
    if multi:
        labels = np.zeros((len(rows), len(names)), dtype=np.uint8)
        for row, names_of in enumerate(sets):
            labels[row, [ids[name] for name in names_of]] = 1
    else:
        labels = np.array([ids[row[1]] for row in rows], dtype=np.int64)
    return Clips(paths=[row[0] for row in rows], labels=labels, label_names=names,
                 split=np.array([row[2] for row in rows], dtype="<U5"),
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
                               f"{root} (first: {missing[0]}); the copy is incomplete, download it again with --force")
        return clips


@functools.cache
def datasets() -> Registry[DatasetSpec]:
    """The data set registry; built-ins register on first use, plugins on first lookup."""
    registry: Registry[DatasetSpec] = Registry("data set", GROUP)
    for name in BUILTINS:
        module = import_module(f".{name}", __package__)
        for spec in getattr(module, "SPECS", None) or [module.SPEC]:
            registry.register(spec.name, spec)
    return registry


def resolve(name_or_path: str | Path, seed: int = 0) -> DatasetSpec:
    """A registered data set by name, or a user's folder / manifest by path (``seed``: its split)."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if name in datasets() or not path.exists():
        if not path.exists() and (path.suffix in (".csv", ".tsv") or "/" in name):
            raise SoftmoaError(f"{name}: no such folder or manifest; give a registered data set "
                               f"({', '.join(datasets().names())}), a folder of class folders or a CSV/TSV manifest")
        return datasets().get(name)  # an unknown name raises, listing the choices
    from .custom import custom_spec

    return custom_spec(path, seed)
