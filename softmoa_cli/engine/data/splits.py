"""The train/valid/test plan of a data set, per fold."""

from __future__ import annotations

from collections.abc import Callable
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
            raise SoftmoaError(f"`fold` {data.fold}: {table.name} has folds {folds[0]}..{folds[-1]}")
        plans = []
        for k in chosen:
            v = folds[(folds.index(k) + 1) % len(folds)]
            plans.append(Split(k, np.flatnonzero((table.fold != k) & (table.fold != v)),
                               np.flatnonzero(table.fold == v), np.flatnonzero(table.fold == k)))
        return plans
    if data.fold is not None:
        raise SoftmoaError(f"`fold` {data.fold}: {table.name} has a fixed train/valid/test split, not folds")
    train, valid, test = (np.flatnonzero(table.split == name) for name in ("train", "valid", "test"))
    if not len(train) or not len(test):
        raise SoftmoaError(f"{table.name}: needs training and test clips (found {len(train)} and {len(test)})")
    if not len(valid):
        train, valid = _hold_out(train, table.task.strata(table.labels[train]), data.valid_fraction)
    return [Split(None, train, valid, test)]


def check_plans(table: FeatureTable, plans: list[Split], message: Callable[[str], None]) -> None:
    """Say aloud what cannot work, before training: a validation or test label with no training
    clip in its fold is a warning naming the labels and the fold (those clips can only be
    missed); a fold in which no test label was trained at all (folds that hold whole classes) is
    a SoftmoaError saying what to do. Multi-label: the same per label, by positive clips."""
    for plan in plans:
        where = "the fixed split" if plan.fold is None else f"fold {plan.fold}"
        trained = _labels_in(table, plan.train)
        tested = _labels_in(table, plan.test)
        if tested and not tested & trained:
            fix = ("reassign the folds so that every class has clips in several folds, or drop the fold column "
                   "and let the tool split" if plan.fold is not None else
                   "put clips of every class in the training split, or drop the split column and let the tool split")
            raise SoftmoaError(f"{table.name}: {where}: none of its test labels ({_names(table, tested)}) has a "
                               f"training clip, so every test clip would be missed; {fix}")
        for part, indices in (("validation", plan.valid), ("test", plan.test)):
            missing = _labels_in(table, indices) - trained
            if missing:
                message(f"{table.name}: {where}: {part} clips of {_names(table, missing)} have no training clip "
                        f"in this fold and can only be missed")


def _labels_in(table: FeatureTable, indices: np.ndarray) -> set[int]:
    """The label ids with at least one clip (multi-label: one positive clip) among ``indices``."""
    return table.task.present(table.labels[indices])


def _names(table: FeatureTable, ids: set[int], shown: int = 6) -> str:
    names = [table.label_names[i] for i in sorted(ids)]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _hold_out(indices: np.ndarray, labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``indices`` into (kept, held out): ``fraction`` of each stratum
    (``labels [n]``, the task's ``strata``: a clip's label, or its first label), at least one."""
    rng = np.random.default_rng(0)
    held = []
    for label in np.unique(labels):
        members = indices[labels == label]
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held.append(rng.permutation(members)[:count])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(indices, held), held
