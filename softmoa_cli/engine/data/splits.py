"""The train/valid/test plan of a data set, per fold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SoftmoaError
from .table import FeatureTable

if TYPE_CHECKING:
    from ..config import DataConfig


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
    """Stratified split of ``indices`` into (kept, held out): ``fraction`` of each class, at least
    one (multi-label rows: stratified by each clip's first label)."""
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    rng = np.random.default_rng(0)
    held = []
    for label in np.unique(labels):
        members = indices[labels == label]
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(rng.permutation(members)[:count])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(indices, held), held
