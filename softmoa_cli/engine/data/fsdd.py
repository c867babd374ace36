"""Free Spoken Digit Dataset: 3,000 recordings of spoken digits at 8 kHz, 6 speakers.

Layout: ``recordings/<digit>_<speaker>_<take>.wav``; the label is the digit. Official split:
takes 0-4 of every speaker and digit are 'test' (300), takes 5-49 'train' (2,700); no
validation split (training holds some out). ``max_length`` 100 frames (1 s): the clips last
0.14-2.3 s (median 0.42 s) and 99.3 % of them fit, so longer inputs would mostly be padding.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SoftmoaError
from .spec import Clips, DatasetSpec, Source, make_clips

FOLDER = "recordings"
NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")
TEST_TAKES = 5  # takes 0..4 form the test set


def scan(root: Path) -> Clips:
    rows = []
    for file in sorted((root / FOLDER).glob("*.wav")):
        match = NAME.fullmatch(file.name)
        if match is None:
            raise SoftmoaError(f"{file}: not an FSDD file name (<digit>_<speaker>_<take>.wav); move it out of {FOLDER}/")
        rows.append((f"{FOLDER}/{file.name}", match[1], "test" if int(match[3]) < TEST_TAKES else "train", 0))
    return make_clips(rows, [str(digit) for digit in range(10)])


SPEC = DatasetSpec(
    name="fsdd",
    title="Free Spoken Digit Dataset",
    marker=FOLDER,
    scan=scan,
    max_length=100,
    source=Source("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz",
                  "free-spoken-digit-dataset-1.0.10.tar.gz"),
    clips=3000,
)
