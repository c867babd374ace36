"""UrbanSound8K: 8,732 urban clips up to 4 s, 10 classes, 10 predefined folds.

Layout: ``UrbanSound8K/audio/fold<k>/<slice_file_name>`` and
``metadata/UrbanSound8K.csv`` (slice_file_name, fsID, start, end, salience, fold, classID,
class). Files mix rates, bit depths and channel counts; ``audio.read_audio`` takes them all.
Label ids follow ``classID``; every clip is 'train' and its fold (1..10) decides.
``max_length`` 400 frames: the 4 s maximum (the recipe's value).
"""

from __future__ import annotations

from pathlib import Path

from .spec import Clips, DatasetSpec, Source, integer, make_clips, read_table

META = "metadata/UrbanSound8K.csv"


def scan(root: Path) -> Clips:
    path = root / META
    table = read_table(path, ["slice_file_name", "fold", "classID", "class"])
    names = dict(sorted({integer(row, "classID", path): row["class"] for row in table}.items()))
    rows = [(f"audio/fold{integer(row, 'fold', path)}/{row['slice_file_name']}", row["class"], "train",
             integer(row, "fold", path)) for row in table]
    return make_clips(rows, list(names.values()))


SPEC = DatasetSpec(
    name="us8k",
    title="UrbanSound8K",
    marker=META,
    scan=scan,
    max_length=400,
    source=Source("https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz", "UrbanSound8K.tar.gz"),
    clips=8732,
)
