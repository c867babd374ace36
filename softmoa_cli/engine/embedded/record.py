"""The embedded backbone's files: a softmoa model folder, ``backbone/``, beside this module, with ``record.json`` (the weights' SHA-256, the command that made them, the seed, the
recipe and the upstream accuracy; ``pretrain.py`` writes it). Runs refer to it
by the name ``embedded``, so a run trained on it loads on any installation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import SoftmoaError
from ..models.pretrained import OWN_WEIGHTS

EMBEDDED = "embedded"  # the reference runs store
FOLDER = Path(__file__).with_name("backbone")
RECORD = "record.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(folder: Path = FOLDER) -> dict:
    """The record of the backbone in ``folder``, its weights checked against the recorded SHA-256."""
    record_file, weights = folder / RECORD, folder / OWN_WEIGHTS
    if not record_file.is_file() or not weights.is_file():
        raise SoftmoaError(f"{folder}: the embedded backbone is missing ({RECORD} or {OWN_WEIGHTS}); reinstall "
                           "softmoa, or make it with `softmoa pretrain-embedded`")
    record = json.loads(record_file.read_text())
    if file_sha256(weights) != record["sha256"]:
        raise SoftmoaError(f"{weights}: the embedded backbone's weights do not match the SHA-256 in {RECORD}; "
                           "reinstall softmoa, or make them again with `softmoa pretrain-embedded`")
    return record


def embedded_backbone(folder: Path = FOLDER) -> Path:
    """The embedded backbone's folder, checked against its record."""
    read_record(folder)
    return folder
