"""What training reads from a prepared feature cache, and the train/valid/test plan per fold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...config.schema import DataConfig
from ..data.features import FeatureConfig
from ..errors import SoftmoaError


@dataclass
class FeatureTable:
    """Features of every clip of a data set with their labels, splits and folds.

    ``features [n, frames, bins]`` (float16, usually memory-mapped); ``labels [n]`` class
    ids; ``split [n]`` 'train' / 'valid' / 'test' (unused by k-fold sets); ``fold [n]``
    (0 when the set has no folds).
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray
    fold: np.ndarray
    feature_config: FeatureConfig

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
