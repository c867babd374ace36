"""Fluent Speech Commands: 30,043 utterances at 16 kHz, 31 intents (action, object, location).

Layout: ``fluent_speech_commands_dataset/data/{train,valid,test}_data.csv`` with columns
``(index), path, speakerId, transcription, action, object, location``; ``path`` is relative to
the root (``wavs/speakers/<id>/<file>.wav``). Splits follow the three files (23,132 / 3,118 /
3,793). Label: ``action-object-location``, names sorted. ``max_length`` 400 frames (4 s, the
recipe's value; utterances are mostly shorter). No anonymous download: see ``OBTAIN``.
"""

from __future__ import annotations

from pathlib import Path

from .spec import Clips, DatasetSpec, make_clips, read_table

FILES = {"train": "data/train_data.csv", "valid": "data/valid_data.csv", "test": "data/test_data.csv"}
OBTAIN = ("Fluent Speech Commands cannot be downloaded anonymously: request it from its publisher "
          "(Fluent.ai, 'Fluent Speech Commands' data set page) and accept the license, then install the "
          "archive or extracted folder with: softmoa download fsc `source` PATH")


def scan(root: Path) -> Clips:
    rows = []
    for split, name in FILES.items():
        for row in read_table(root / name, ["path", "action", "object", "location"]):
            rows.append((row["path"], f"{row['action']}-{row['object']}-{row['location']}", split, 0))
    return make_clips(rows)


SPEC = DatasetSpec(
    name="fsc",
    title="Fluent Speech Commands",
    marker=FILES["train"],
    scan=scan,
    max_length=400,
    obtain=OBTAIN,
    clips=30_043,
)
