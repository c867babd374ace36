"""Speech Commands V2: 105,829 one-second utterances at 16 kHz, 35 words.

Layout: one folder per word at the root, ``_background_noise_/`` (not a class), and
``validation_list.txt`` / ``testing_list.txt`` (paths relative to the root). Listed files are
'valid' / 'test', all others 'train' (84,843 / 9,981 / 11,005). Labels: the words, sorted.
``max_length`` 100 frames: the whole 1 s utterance.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SoftmoaError
from .spec import Clips, DatasetSpec, Source, make_clips

VALID = "validation_list.txt"
TEST = "testing_list.txt"


def _listed(path: Path) -> set[str]:
    if not path.is_file():
        raise SoftmoaError(f"{path}: missing; a Speech Commands copy has {VALID} and {TEST} at its root")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def scan(root: Path) -> Clips:
    valid, test = _listed(root / VALID), _listed(root / TEST)
    words = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))
    rows = []
    for word in words:
        for file in sorted((root / word).glob("*.wav")):
            path = f"{word}/{file.name}"
            rows.append((path, word, "valid" if path in valid else "test" if path in test else "train", 0))
    return make_clips(rows)


SPEC = DatasetSpec(
    name="speechcommands",
    title="Speech Commands V2",
    marker=VALID,
    scan=scan,
    max_length=100,
    source=Source("http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
                  "speech_commands_v0.02.tar.gz"),
    clips=105_829,
)
