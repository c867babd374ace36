"""What training reads from a prepared feature cache, and the train/valid/test plan per fold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import DataConfig
from ..data.features import FeatureConfig
from ..errors import SoftmoaError


@dataclass
class FeatureTable:
    """Features of every clip of a data set with their labels, splits and folds.

    ``features [n, frames, bins]`` (float16, usually memory-mapped): each clip's first window;
    ``labels [n]`` class ids; ``split [n]`` 'train' / 'valid' / 'test' (unused by k-fold sets);
    ``fold [n]`` (0 when the set has no folds). Clips longer than one window: ``windows [n]``
    windows per clip and ``extra [sum(windows - 1), frames, bins]`` their further windows,
    clip after clip (None: every clip is one window).
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

    @property
    def folds(self) -> list[int]:
        """The predefined folds (ESC-50: 1..5, UrbanSound8K: 1..10); empty for split sets."""
        values = sorted(set(self.fold.tolist()) - {0})
        return values if len(values) >= 3 and not (self.split == "test").any() else []

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[b, frames, bins]`` float32 and labels ``[b]`` of these clips."""
        order = np.argsort(indices, kind="stable")  # sorted reads are faster on a memory map
        rows = np.empty((len(indices), *self.features.shape[1:]), dtype=np.float32)
        rows[order] = self.features[indices[order]]
        return torch.from_numpy(rows), torch.from_numpy(np.asarray(self.labels[indices], dtype=np.int64))

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


@dataclass(frozen=True)
class Split:
    """Clip indices of one fold (``fold`` None for a data set with a fixed split)."""

    fold: int | None
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def plan_splits(table: FeatureTable, data: DataConfig) -> list[Split]:
    """K-fold sets rotate: test fold k, validation fold k+1 (cyclic), train on the rest
    (ESC-50: 3/1/1). Split sets use their train/valid/test; without a validation split a
    stratified ``valid_fraction`` of the training clips is held out (fixed seed, so every
    run and seed validates on the same clips), never the test clips."""
    folds = table.folds
    if folds:
        chosen = folds if data.fold is None else [data.fold]
        if data.fold is not None and data.fold not in folds:
            raise SoftmoaError(f"--fold {data.fold}: {table.name} has folds {folds[0]}..{folds[-1]}")
        plans = []
        for k in chosen:
            v = folds[(folds.index(k) + 1) % len(folds)]
            plans.append(Split(k, np.flatnonzero((table.fold != k) & (table.fold != v)),
                               np.flatnonzero(table.fold == v), np.flatnonzero(table.fold == k)))
        return plans
    if data.fold is not None:
        raise SoftmoaError(f"--fold {data.fold}: {table.name} has a fixed train/valid/test split, not folds")
    train, valid, test = (np.flatnonzero(table.split == name) for name in ("train", "valid", "test"))
    if not len(train) or not len(test):
        raise SoftmoaError(f"{table.name}: needs training and test clips (found {len(train)} and {len(test)})")
    if not len(valid):
        train, valid = _hold_out(train, table.labels[train], data.valid_fraction)
    return [Split(None, train, valid, test)]


def _hold_out(indices: np.ndarray, labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``indices`` into (kept, held out): ``fraction`` of each class, at least one."""
    rng = np.random.default_rng(0)
    held = []
    for label in np.unique(labels):
        members = indices[labels == label]
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(rng.permutation(members)[:count])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(indices, held), held
