"""The feature cache on disk: every clip's features computed once, memory-mapped for training.

A published cache is the folder ``$SOFTMOA_HOME/cache/<name>/<key>/``:

- ``features.f16``: float16 ``[n, *window]``, C order, raw (``np.memmap``): each clip's first
  window (see ``features.window_starts``), what training reads; a window is the front end's
  (``FeatureConfig.window_shape``): fbank or Whisper log-mels ``[max_length, mel_bins]``, or
  ``[max_length * 160]`` samples of a 16 kHz waveform;
- ``extra.f16``: float16 ``[k, *window]``: the further windows of the clips longer
  than ``max_length``, clip after clip, so evaluation scores whole clips as ``predict`` does
  (absent when no clip is longer; each clip is kept up to its first ``max_seconds``, default
  ``MAX_SECONDS``, the window rule applied to those frames);
- ``index.json``: settings, source fingerprint, label names and per clip path, label, split,
  fold, number of windows and kept frames (training crops long clips at random, ``table.py``);
- ``bad.tsv``: the clips that were skipped, with the reason (``path<TAB>reason``);
- ``accepted.json``: the share of bad clips a user accepted (``prepare --max-bad``), remembered
  so that every later command opening the cache accepts it too (``accept_bad``).

``key`` is ``L<max_length>-<settings hash>-<sources hash>``: the feature settings (the whole
``FeatureConfig``: the front end's ``kind``, mel bins, normalisation, rate, ``max_length`` and
``max_seconds``; and this module's ``FORMAT``), and every clip's path, label, split, fold, size
and mtime. Changed settings or sources give a new key, never a silently reused cache: the same
data set for another backbone's front end is another cache.
``cache_build.py`` builds and publishes one, ``cache_open.py`` opens one for training.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import SoftmoaError
from ..fsutil import atomic_write_json
from ..task import task_named
from .features import FeatureConfig
from .paths import cache_dir
from .shares import format_share
from .spec import Clips
from .table import MAX_BAD, FeatureTable

FORMAT = 4  # bump when the stored features change meaning (2: windows of long clips, float16 windows;
# 3: the first max_seconds of a clip kept, its kept frames in the index; 4: max_seconds in the features)
FEATURES = "features.f16"
EXTRA = "extra.f16"
INDEX = "index.json"
ACCEPTED = "accepted.json"


def load_cache(folder: str | Path) -> FeatureTable:
    """Open a published cache folder (memory-maps the features, reads the index)."""
    folder = Path(folder)
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError) as error:
        raise SoftmoaError(f"{folder}: not a feature cache ({error}); run softmoa prepare again") from None
    config = FeatureConfig(**index["settings"]["features"])
    counts = np.array(index["windows"], dtype=np.int64)
    frames = np.array(index["frames"], dtype=np.int64) if "frames" in index else None
    window = config.window_shape
    features, extra = (np.memmap(folder / name, dtype=np.float16, mode="r", shape=(rows, *window)) if rows
                       else np.zeros((0, *window), np.float16)
                       for name, rows in ((FEATURES, len(counts)), (EXTRA, int((counts - 1).sum()))))
    accepted = json.loads((folder / ACCEPTED).read_text())["max_bad"] if (folder / ACCEPTED).is_file() else MAX_BAD
    labels = task_named(index["task"]).decode(index["labels"], len(index["label_names"]))
    return FeatureTable(index["name"], features, labels, index["label_names"],
                        np.array(index["split"], dtype="<U5"), np.array(index["fold"], dtype=np.int64), config,
                        counts, extra, folder, index["paths"], [tuple(row) for row in index["bad"]], index["listed"],
                        accepted, frames)


# --- fingerprint -------------------------------------------------------------------------


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def settings_of(config: FeatureConfig) -> dict:
    return {"format": FORMAT, "features": asdict(config)}


def cache_key(root: Path, clips: Clips, config: FeatureConfig) -> str:
    """``L<max_length>-<settings hash>-<sources hash>`` (sources: each clip's metadata, size, mtime)."""
    sources = []
    for row, (path, split, fold) in enumerate(zip(clips.paths, clips.split.tolist(), clips.fold.tolist())):
        try:
            info = (root / path).stat()
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size, mtime = -1, 0
        sources.append((path, clips.label_text(row), split, fold, size, mtime))
    return f"L{config.max_length}-{_digest(settings_of(config))}-{_digest(sources)}"


def find_cache(name: str, config: FeatureConfig, home: Path | None = None) -> Path | None:
    """The newest published cache of ``name`` with these settings, whatever its sources."""
    prefix = f"L{config.max_length}-{_digest(settings_of(config))}-"
    folder = cache_dir(name, home)
    found = [p for p in folder.glob(prefix + "*") if (p / INDEX).is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: (p / INDEX).stat().st_mtime, default=None)


# --- bad clips ---------------------------------------------------------------------------


def check_bad(cache: FeatureTable, max_bad: float | None = None) -> None:
    """SoftmoaError when no clip is usable or the share of bad clips is above the accepted share:
    ``max_bad`` when given, else the share accepted for this cache before (``accept_bad``)."""
    if not len(cache):
        raise SoftmoaError(f"{cache.name}: none of the {cache.listed} clips could be read; see {cache.report}")
    accepted = cache.accepted_bad if max_bad is None else max_bad
    share = len(cache.bad) / cache.listed
    if share > accepted:
        needed = format_share(math.ceil(share * 1000) / 1000)
        raise SoftmoaError(f"{cache.name}: {len(cache.bad)} of {cache.listed} clips are bad ({format_share(share)}), "
                           f"above the accepted {format_share(accepted)}; see {cache.report}, fix or remove them, "
                           f"or accept them with `max_bad` {needed}")


def accept_bad(cache: FeatureTable, max_bad: float) -> None:
    """Check the cache against ``max_bad`` and remember that share with it, so later commands
    (finetune, evaluate) opening this cache without a ``max_bad`` of their own accept the
    same clips."""
    check_bad(cache, max_bad)
    if max_bad != cache.accepted_bad:
        atomic_write_json(cache.path / ACCEPTED, {"max_bad": max_bad})
        cache.accepted_bad = max_bad
