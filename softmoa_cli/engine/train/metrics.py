"""Classification metrics, all derived from one confusion matrix (rows: true, columns: predicted)."""

from __future__ import annotations

import math

import torch


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``predicted, target [n]`` class ids on any devices -> counts ``[classes, classes]`` (int64, CPU)."""
    flat = target.long().cpu() * num_classes + predicted.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def accuracy(confusion: torch.Tensor) -> float:
    total = int(confusion.sum())
    return float(confusion.diag().sum()) / total if total else 0.0


def per_class(confusion: torch.Tensor) -> list[dict]:
    """Precision, recall, F1 and support per class (0 where a denominator is 0)."""
    confusion = confusion.double()
    hits = confusion.diag()
    support = confusion.sum(dim=1)
    predicted = confusion.sum(dim=0)
    rows = []
    for tp, n_true, n_pred in zip(hits.tolist(), support.tolist(), predicted.tolist()):
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"precision": precision, "recall": recall, "f1": f1, "support": int(n_true)})
    return rows


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean F1 over the classes that occur in the targets."""
    rows = [row for row in per_class(confusion) if row["support"]]
    return sum(row["f1"] for row in rows) / len(rows) if rows else 0.0


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
