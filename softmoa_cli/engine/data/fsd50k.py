"""FSD50K: 51,197 Freesound clips of 0.3-30 s at 44.1 kHz, 200 AudioSet classes, multi-label.

Layout of the extracted release (Zenodo record 4060432)::

    FSD50K.dev_audio/<fname>.wav       40,966 clips
    FSD50K.eval_audio/<fname>.wav      10,231 clips
    FSD50K.ground_truth/vocabulary.csv no header: index,label,mid (200 rows)
    FSD50K.ground_truth/dev.csv        fname,labels,mids,split (split: train or val)
    FSD50K.ground_truth/eval.csv       fname,labels,mids

``labels`` is a comma-separated label set. Splits: dev ``train`` -> 'train', dev ``val`` ->
'valid' (the release's own split), eval -> 'test'. Label names in vocabulary order.
``max_length`` 1024 frames (10.24 s): AST's AudioSet setting; longer clips are scored over all
their windows (the window rule). No anonymous download (about 30 GB): see ``OBTAIN``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import SoftmoaError
from .spec import Clips, DatasetSpec, make_clips, read_table

TRUTH = "FSD50K.ground_truth"
VOCABULARY = f"{TRUTH}/vocabulary.csv"
DEV, EVAL = f"{TRUTH}/dev.csv", f"{TRUTH}/eval.csv"
AUDIO = {"dev": "FSD50K.dev_audio", "eval": "FSD50K.eval_audio"}
DEV_SPLITS = {"train": "train", "val": "valid"}
OBTAIN = ("FSD50K cannot be downloaded by softmoa (about 30 GB on Zenodo): download the release from "
          "https://zenodo.org/record/4060432 (FSD50K.dev_audio.zip with its parts .z01-.z05, "
          "FSD50K.eval_audio.zip with .z01, FSD50K.ground_truth.zip), join each split archive "
          "(zip -s 0 FSD50K.dev_audio.zip --out dev.zip) and unzip everything into one FOLDER, then run: "
          "softmoa download fsd50k `source` FOLDER")


def vocabulary(path: Path) -> list[str]:
    """The label names of ``vocabulary.csv`` (``index,label,mid`` rows, no header) in index order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SoftmoaError(f"{path}: cannot read this table ({error}); check the file") from None
    names: dict[int, str] = {}
    for line, row in enumerate(rows, 1):
        if len(row) < 2 or not row[0].strip().isdigit():
            raise SoftmoaError(f"{path}: line {line} is {','.join(row)!r}, not index,label,mid; "
                               "is this FSD50K's vocabulary.csv?")
        names[int(row[0])] = row[1].strip()
    if sorted(names) != list(range(len(names))) or len(set(names.values())) != len(names):
        raise SoftmoaError(f"{path}: indices must run 0..{len(names) - 1} over distinct labels; "
                           "is this FSD50K's vocabulary.csv?")
    return [names[index] for index in range(len(names))]


def _label_set(row: dict[str, str], path: Path, known: set[str]) -> tuple[str, ...]:
    labels = tuple(name.strip() for name in row["labels"].split(",") if name.strip())
    unknown = [name for name in labels if name not in known]
    if unknown:
        raise SoftmoaError(f"{path}: clip {row['fname']} has label {unknown[0]!r}, which is not in "
                           f"{VOCABULARY}; the ground truth files do not belong together")
    return labels


def scan(root: Path) -> Clips:
    names = vocabulary(root / VOCABULARY)
    known = set(names)
    rows = []
    dev = root / DEV
    for row in read_table(dev, ["fname", "labels", "split"]):
        split = DEV_SPLITS.get(row["split"].strip())
        if split is None:
            raise SoftmoaError(f"{dev}: clip {row['fname']} has split {row['split']!r}; expected train or val")
        rows.append((f"{AUDIO['dev']}/{row['fname'].strip()}.wav", _label_set(row, dev, known), split, 0))
    evaluation = root / EVAL
    for row in read_table(evaluation, ["fname", "labels"]):
        rows.append((f"{AUDIO['eval']}/{row['fname'].strip()}.wav", _label_set(row, evaluation, known), "test", 0))
    return make_clips(rows, names)


SPEC = DatasetSpec(
    name="fsd50k",
    title="FSD50K",
    marker=VOCABULARY,
    scan=scan,
    max_length=1024,
    obtain=OBTAIN,
    clips=51_197,
)
