"""The features and labels of a data set: the one type training, evaluation and analysis read.

A ``FeatureTable`` comes from a prepared feature cache (``cache.load_cache``, memory-mapped,
with the cache's folder, clip paths and bad-clip report) or is built in memory (tests, users'
own arrays). Reads are whole batches with one sorted index into the memory map.

Training reads a random ``max_length`` crop of each clip longer than one window
(``crop_batch``), rebuilt from the clip's stored windows; short clips read their one window as
``batch`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..task import Task, task_of
from .features import FeatureConfig

MAX_BAD = 0.01  # the share of bad clips accepted unless a user accepts more
BAD = "bad.tsv"  # a cache's report of the clips it skipped


@dataclass
class FeatureTable:
    """Every clip of a data set, in a fixed order.

    ``features [n, *window]`` float16 (usually memory-mapped): each clip's first window
    (``features.window_starts``), a window being ``feature_config.window_shape`` (log-mels
    ``[max_length, mel_bins]``, or ``[max_length * 160]`` samples of a waveform); ``labels`` ids
    into ``label_names``: ``[n]`` int64 (single-label) or ``[n, classes]`` uint8 multi-hot label
    sets (multi-label); ``split
    [n]`` 'train' / 'valid' / 'test' (k-fold sets: all 'train'); ``fold [n]`` int64, 1..k or 0
    when the set has no folds. Clips longer than one window: ``windows [n]`` windows per clip
    and ``extra [sum(windows - 1), *window]`` their further windows, clip after clip (None:
    every clip is one window); ``frames [n]`` int64 the frames the windows of each
    long clip cover (``max_length`` for a one-window clip; None: unknown, a long clip's crops are
    then whole windows).

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
    frames: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def task(self) -> Task:
        """The task the labels are held for: one label per clip, or label sets (``engine/task.py``)."""
        return task_of(self.labels)

    def as_task(self, task: Task) -> "FeatureTable":
        """The same clips with their labels held for ``task`` (a run config's ``task: multilabel``)."""
        return self if task is self.task else replace(self, labels=task.rows(self.labels, len(self.label_names)))

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
        """Features ``[b, *window]`` float32 and the task's targets of these clips (class ids
        ``[b]`` int64, or multi-hot rows ``[b, classes]`` float32)."""
        order = np.argsort(indices, kind="stable")  # sorted reads are faster on a memory map
        rows = np.empty((len(indices), *self.features.shape[1:]), dtype=np.float32)
        rows[order] = self.features[indices[order]]
        return torch.from_numpy(rows), self.task.targets(self.labels[indices])

    def window_batches(self, indices: np.ndarray, limit: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every window of these clips by the window rule, at most ``limit`` at a time (a long
        clip's windows may span several batches): features ``[<= limit, *window]`` float32
        and ``owner [<= limit]``, the position in ``indices`` of each window's clip. Only the
        windows of one batch are read from the memory map at once, so memory stays flat on hours
        of audio."""
        counts = np.ones(len(indices), dtype=np.int64) if self.windows is None else self.windows[indices]
        items = [(position, int(index), window) for position, (index, count) in enumerate(zip(indices, counts))
                 for window in range(int(count))]
        for start in range(0, len(items), limit):
            yield self._read_windows(items[start:start + limit])

    def _read_windows(self, items: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(position, clip, window)`` items -> their features float32 and owners (positions):
        first windows in one sorted read from ``features``, further ones from ``extra``."""
        rows = np.empty((len(items), *self.features.shape[1:]), dtype=np.float32)
        firsts = np.array([k for k, (_, _, window) in enumerate(items) if window == 0], dtype=np.int64)
        if len(firsts):
            clips = np.array([items[k][1] for k in firsts])
            order = np.argsort(clips, kind="stable")  # sorted reads are faster on a memory map
            rows[firsts[order]] = self.features[clips[order]]
        for k, (_, index, window) in enumerate(items):
            if window:
                rows[k] = self._window(index, window)
        return torch.from_numpy(rows), torch.tensor([position for position, _, _ in items])

    def crop_starts(self, indices: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """The first frame of each clip's training crop: uniform in ``[0, frames - max_length]``
        for a clip longer than one window, drawn from ``generator`` in the order of ``indices``;
        0 for the others (no draw). Without ``frames``, a long clip's crop is one of its windows,
        drawn uniformly."""
        starts = np.zeros(len(indices), dtype=np.int64)
        if self.windows is None:
            return starts
        length = self.feature_config.max_length
        for position, index in enumerate(np.asarray(indices).tolist()):
            count = int(self.windows[index])
            if count <= 1:
                continue
            if self.frames is None:
                window = int(torch.randint(count, (1,), generator=generator))
                starts[position] = self._window_start(window, count, count * length)
            else:
                starts[position] = int(torch.randint(int(self.frames[index]) - length + 1, (1,), generator=generator))
        return starts

    def crop_batch(self, indices: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch``, with each clip longer than one window replaced by its ``max_length``-frame
        crop at ``crop_starts`` (float16 frames as stored, to float32). A batch of one-window clips
        is exactly ``batch`` and draws nothing."""
        x, y = self.batch(indices)
        if self.windows is None:
            return x, y
        starts = self.crop_starts(indices, generator)
        for position, index in enumerate(np.asarray(indices).tolist()):
            if int(self.windows[index]) > 1:
                x[position] = torch.from_numpy(self._crop(index, int(starts[position])))
        return x, y

    def _window_start(self, window: int, count: int, frames: int) -> int:
        """Where window ``window`` of a ``count``-window clip of ``frames`` frames starts (the window rule)."""
        length = self.feature_config.max_length
        return frames - length if window == count - 1 else window * length

    def _window(self, index: int, window: int) -> np.ndarray:
        """Window ``window`` of clip ``index``: the first in ``features``, the others in ``extra``."""
        if window == 0:
            return self.features[index]
        return self.extra[int(self._extra_starts[index]) + window - 1]

    @cached_property
    def _extra_starts(self) -> np.ndarray:
        """Each clip's first row in ``extra``."""
        return np.concatenate([[0], np.cumsum(self.windows - 1)])

    def _crop(self, index: int, start: int) -> np.ndarray:
        """Frames ``start .. start + max_length`` of long clip ``index`` from its stored windows,
        float32, one window's shape: frame ``t`` from the consecutive window ``t // max_length``,
        or, past the last consecutive one, from the end-aligned last window. A window is seen as
        ``[max_length, frame]`` (a frame: a log-mel's bins, or 160 samples of a waveform)."""
        length, count = self.feature_config.max_length, int(self.windows[index])
        frames = int(self.frames[index]) if self.frames is not None else count * length
        t = np.arange(start, start + length)
        window = np.minimum(t // length, count - 1)
        last = frames - length
        offset = np.where(window == count - 1, t - last, t - window * length)
        out = np.empty((length, self.features[0].size // length), dtype=np.float32)
        for w in np.unique(window).tolist():
            rows = window == w
            out[rows] = self._window(index, w).reshape(length, -1)[offset[rows]]
        return out.reshape(self.features.shape[1:])
