"""A run's results as values: each epoch's row (``EpochRow``, a line of ``log.csv`` and an entry of
``metrics.json``), each fold's test of its best epoch (``FoldResult``) and the whole run's
(``RunMetrics``: the task, every fold, the summary over folds). They are read and written here
only, so no reader looks for keys: the task (``engine/task.py``) names the validation score
(``valid_accuracy`` or ``valid_mAP`` on disk) and the test metrics.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..fsutil import atomic_write_json, atomic_write_text
from ..task import Task, task_named
from .files import LOG_FILE, METRICS_FILE


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass
class EpochRow:
    """One epoch of a fold: training loss and hit share (``Task.hit``), validation loss and score
    (``metric``: the task's, accuracy or mAP), the learning rate its last step used, its training
    seconds and the seconds its steps waited for data."""

    epoch: int
    train_loss: float
    train_accuracy: float
    valid_loss: float
    valid_score: float
    lr: float
    seconds: float
    data_wait: float
    metric: str = "accuracy"

    def to_dict(self) -> dict:
        """As ``metrics.json`` holds it: the score under ``valid_<metric>``."""
        row = asdict(self)
        row[f"valid_{row.pop('metric')}"] = row.pop("valid_score")
        return {key: row[key] for key in ("epoch", "train_loss", "train_accuracy", "valid_loss",
                                          f"valid_{self.metric}", "lr", "seconds", "data_wait")}

    @classmethod
    def from_dict(cls, saved: dict, metric: str) -> EpochRow:
        return cls(saved["epoch"], saved["train_loss"], saved["train_accuracy"], saved["valid_loss"],
                   saved[f"valid_{metric}"], saved["lr"], saved["seconds"], saved.get("data_wait", 0.0), metric)


@dataclass
class FoldResult:
    """A fold's best epoch and its test: ``scores`` the task's test metrics with ``loss`` and
    ``clips`` (``Evaluation.metrics``), what it cost and how training went."""

    fold: int | None
    best_epoch: int
    valid_score: float
    scores: dict
    trainable_params: int
    train_seconds: float
    epochs_trained: int
    optimizer_steps: int | None
    stopped_early: bool
    adapter_bytes: int | None = None
    metric: str = "accuracy"

    def to_dict(self) -> dict:
        """As ``metrics.json`` holds it: flat, the score under ``valid_<metric>``."""
        return {"fold": self.fold, "best_epoch": self.best_epoch, f"valid_{self.metric}": self.valid_score,
                **self.scores, "trainable_params": self.trainable_params, "train_seconds": self.train_seconds,
                "epochs_trained": self.epochs_trained, "optimizer_steps": self.optimizer_steps,
                "stopped_early": self.stopped_early, "adapter_bytes": self.adapter_bytes}

    @classmethod
    def from_dict(cls, saved: dict, task: Task) -> FoldResult:
        """A saved result (``checkpoint_bytes``: the adapter's size as runs before this version named it)."""
        known = {f.name for f in fields(cls)} | {f"valid_{task.metric}", "checkpoint_bytes"}
        return cls(saved["fold"], saved["best_epoch"], saved[f"valid_{task.metric}"],
                   {key: value for key, value in saved.items() if key not in known},
                   saved["trainable_params"], saved["train_seconds"], saved.get("epochs_trained", 0),
                   saved.get("optimizer_steps"), saved.get("stopped_early", False),
                   saved.get("adapter_bytes", saved.get("checkpoint_bytes")), task.metric)


@dataclass
class FoldRecord:
    """A fold's epochs so far and, once it is done, its result."""

    epochs: list[EpochRow] = field(default_factory=list)
    result: FoldResult | None = None


def fold_key(fold: int | None) -> str:
    """How ``metrics.json`` and ``log.csv`` name a fold: its number, or ``all`` for a fixed split."""
    return "all" if fold is None else str(fold)


@dataclass
class RunMetrics:
    """Every fold's epochs and result, for the run's ``task``; ``summary()`` over the folds done."""

    dataset: str
    method: str
    task: Task
    folds: dict[str, FoldRecord] = field(default_factory=dict)

    @property
    def results(self) -> list[FoldResult]:
        return [record.result for record in self.folds.values() if record.result is not None]

    def summary(self) -> dict:
        """``folds`` and the mean and sample std of each of the task's summary metrics
        (``accuracy_mean``, ``accuracy_std``, ...) over the folds done."""
        return summarize(self.task, [result.scores for result in self.results])

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "method": self.method, "task": self.task.name,
                "folds": {key: {"epochs": [row.to_dict() for row in record.epochs],
                                "test": record.result.to_dict() if record.result else None}
                          for key, record in self.folds.items()},
                "summary": self.summary()}

    @classmethod
    def from_dict(cls, saved: dict) -> RunMetrics:
        task = task_named(saved.get("task"))
        return cls(saved["dataset"], saved["method"], task, {
            key: FoldRecord([EpochRow.from_dict(row, task.metric) for row in fold["epochs"]],
                            FoldResult.from_dict(fold["test"], task) if fold.get("test") else None)
            for key, fold in saved["folds"].items()})

    @classmethod
    def read(cls, folder: Path) -> RunMetrics:
        return cls.from_dict(json.loads((Path(folder) / METRICS_FILE).read_text()))

    def write(self, folder: Path) -> None:
        """``metrics.json`` and ``log.csv`` (one line per epoch of every fold), each atomically."""
        atomic_write_json(folder / METRICS_FILE, self.to_dict())
        columns = ["fold", *EpochRow(0, 0, 0, 0, 0, 0, 0, 0, self.task.metric).to_dict()]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        for key, record in self.folds.items():
            for row in record.epochs:
                writer.writerow({"fold": key, **{k: _round(v) for k, v in row.to_dict().items()}})
        atomic_write_text(folder / LOG_FILE, buffer.getvalue())


def summarize(task: Task, scores: list[dict]) -> dict:
    """Mean and sample std over folds of the task's summary metrics of each fold's ``scores``."""
    if not scores:
        return {}
    summary = {"folds": len(scores)}
    for name in task.summary:
        mean, std = mean_std([s[name] for s in scores])
        summary |= {f"{name}_mean": mean, f"{name}_std": std}
    return summary


def read_log(folder: Path) -> list[dict]:
    """``log.csv``'s rows, as written (for a tool reading a run's epochs as a table)."""
    with open(Path(folder) / LOG_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def _round(value):
    """A float to 6 significant digits (a late learning rate of 6.3e-05 keeps its digits)."""
    return float(f"{value:.6g}") if isinstance(value, float) else value
