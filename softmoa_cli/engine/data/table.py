"""The features and labels of a data set: the one type training, evaluation and analysis read.

A ``FeatureTable`` comes from a prepared feature cache (``cache.load_cache``, memory-mapped,
with the cache's folder, clip paths and bad-clip report) or is built in memory (tests, users'
own arrays). Reads are whole batches with one sorted index into the memory map.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .features import FeatureConfig

MAX_BAD = 0.01  # the share of bad clips accepted unless a user accepts more
BAD = "bad.tsv"  # a cache's report of the clips it skipped


@dataclass
class FeatureTable:
    """Every clip of a data set, in a fixed order.

    ``features [n, max_length, mel_bins]`` float16 (usually memory-mapped): each clip's first
    window (``features.window_starts``); ``labels`` ids into ``label_names``: ``[n]`` int64
    (single-label) or ``[n, classes]`` uint8 multi-hot label sets (multi-label); ``split
    [n]`` 'train' / 'valid' / 'test' (k-fold sets: all 'train'); ``fold [n]`` int64, 1..k or 0
    when the set has no folds. Clips longer than one window: ``windows [n]`` windows per clip
    and ``extra [sum(windows - 1), max_length, mel_bins]`` their further windows, clip after
    clip (None: every clip is one window).

    From a cache: ``path`` its folder, ``paths [n]`` clip paths relative to the data set root,
    ``bad`` the skipped clips ``(path, reason)``, ``listed`` the clips the metadata lists (kept
    + bad), ``accepted_bad`` the share of bad clips a user accepted for it.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray
    fold: np.ndarray
    feature_config: FeatureConfig
    windows: np.ndarray | None = None
    extra: np.ndarray | None = None
    path: Path | None = None
    paths: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    listed: int = 0
    accepted_bad: float = MAX_BAD

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        """Several labels per clip (sigmoid outputs, mAP) rather than one (softmax, accuracy)."""
        return self.labels.ndim == 2

    def as_multi_label(self) -> "FeatureTable":
        """The same clips with their labels as multi-hot rows (a preset's ``task: multilabel``)."""
        if self.multi_label:
            return self
        rows = np.zeros((len(self), len(self.label_names)), dtype=np.uint8)
        rows[np.arange(len(self)), self.labels] = 1
        return replace(self, labels=rows)

    @property
    def report(self) -> Path | None:
        """The bad clip report ``bad.tsv`` of a cache."""
        return None if self.path is None else self.path / BAD

    @property
    def folds(self) -> list[int]:
        """The predefined folds (ESC-50: 1..5, UrbanSound8K: 1..10); empty for split sets."""
        values = sorted(set(self.fold.tolist()) - {0})
        return values if len(values) >= 3 and not (self.split == "test").any() else []

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[b, frames, bins]`` float32 and the targets of these clips: class ids ``[b]``
        int64, or multi-hot rows ``[b, classes]`` float32 for a multi-label table."""
        order = np.argsort(indices, kind="stable")  # sorted reads are faster on a memory map
        rows = np.empty((len(indices), *self.features.shape[1:]), dtype=np.float32)
        rows[order] = self.features[indices[order]]
        targets = np.asarray(self.labels[indices], dtype=np.float32 if self.multi_label else np.int64)
        return torch.from_numpy(rows), torch.from_numpy(targets)

    def clip_windows(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Every window of these clips by the window rule: features ``[w, frames, bins]`` float32
        and ``owner [w]``, the position in ``indices`` of each window's clip."""
        first, _ = self.batch(indices)
        if self.windows is None or not (self.windows[indices] > 1).any():
            return first, torch.arange(len(indices))
        starts = np.concatenate([[0], np.cumsum(self.windows - 1)])  # each clip's first row in ``extra``
        parts, owner = [], []
        for position, (index, row) in enumerate(zip(indices.tolist(), first)):
            count = int(self.windows[index])
            parts += [row[None], torch.from_numpy(np.asarray(self.extra[starts[index]:starts[index] + count - 1],
                                                             dtype=np.float32))]
            owner += [position] * count
        return torch.cat(parts), torch.tensor(owner)
