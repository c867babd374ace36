"""ESC-50: 2,000 environmental clips of 5 s at 44.1 kHz, 50 classes, 5 predefined folds.

Layout: ``ESC-50-master/audio/*.wav`` and ``meta/esc50.csv`` (filename, fold, target,
category, ...). Label ids follow ``target``; every clip is 'train' and its fold (1..5) decides
the rotation. ``max_length`` 500 frames: the whole 5 s clip (the recipe's value).
"""

from __future__ import annotations

from pathlib import Path

from .spec import Clips, DatasetSpec, Source, integer, make_clips, read_table

META = "meta/esc50.csv"


def scan(root: Path) -> Clips:
    path = root / META
    table = read_table(path, ["filename", "fold", "target", "category"])
    names = dict(sorted({integer(row, "target", path): row["category"] for row in table}.items()))
    rows = [(f"audio/{row['filename']}", row["category"], "train", integer(row, "fold", path)) for row in table]
    return make_clips(rows, list(names.values()))


SPEC = DatasetSpec(
    name="esc50",
    title="ESC-50",
    marker=META,
    scan=scan,
    max_length=500,
    source=Source("https://github.com/karoldvl/ESC-50/archive/master.zip", "ESC-50-master.zip"),
    clips=2000,
)
