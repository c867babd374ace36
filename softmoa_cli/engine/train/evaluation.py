"""Scoring clips: the precision context, window probabilities in bounded batches, a clip's
scores as the mean over its windows (the window rule of ``data/features.py``), and a set of
clips scored (``score_indices``: probabilities, targets, loss) with the metrics of either
task. Training, ``evaluate`` and ``predict`` all score through these functions, so a clip
gets one score whichever command asks.

Every result leaves here on the CPU: metrics never mix the model's device with the labels'.
Scores are computed in fp32 whatever precision the model trained in (``Precision("fp32")``),
so a run's own validation and test, ``evaluate`` and ``predict`` agree on every device.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.table import FeatureTable
from .distributed import World
from .metrics import accuracy, confusion_matrix, macro_f1, multi_label_metrics
from .metrics import per_class as class_rows


class Precision:
    """Autocast context for the configured precision ("auto": bf16 on CUDA, fp32 on CPU; bf16 or
    fp16: autocast to that type; fp32: none)."""

    def __init__(self, name: str, device: torch.device):
        chosen = "bf16" if name == "auto" and device.type == "cuda" else name
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(chosen)  # None: fp32
        self.device_type = device.type

    def __call__(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@torch.no_grad()
def window_log_probabilities(model: nn.Module, windows: torch.Tensor, batch_size: int, device: torch.device,
                             precision: Precision | None = None, multi_label: bool = False) -> torch.Tensor:
    """``windows [w, frames, bins]`` -> log-probabilities ``[w, classes]`` (float64, CPU), at
    most ``batch_size`` windows through the model at once, so memory stays flat on long files.
    Single-label: log-softmax over classes; multi-label: log-sigmoid per class."""
    precision = precision or Precision("fp32", device)
    parts = []
    for start in range(0, len(windows), batch_size):
        x = windows[start:start + batch_size].to(device, torch.float32, non_blocking=True)
        with precision():
            logits = model(x).float()  # [batch, classes]
        logits = logits.double()
        parts.append((nn.functional.logsigmoid(logits) if multi_label else logits.log_softmax(dim=-1)).cpu())
    return torch.cat(parts)


def clip_log_probabilities(window_log_probs: torch.Tensor, owner: torch.Tensor, clips: int) -> torch.Tensor:
    """Mean window probabilities per clip, as logs: ``[w, classes]`` and ``owner [w]`` (clip of
    each window, 0..clips-1) -> ``[clips, classes]``."""
    totals = torch.zeros(clips, window_log_probs.shape[1], dtype=torch.float64)
    totals.index_add_(0, owner, window_log_probs.exp())
    counts = torch.bincount(owner, minlength=clips).double()
    return (totals / counts[:, None]).log()


@dataclass
class Evaluation:
    """A set of clips scored by the window rule: ``probabilities [n, classes]`` (float64, CPU;
    softmax or sigmoid, averaged over each clip's windows; every rank holds every row), the
    ``targets`` (class ids ``[n]`` int64, or multi-hot rows ``[n, classes]``) and ``loss``, the
    mean over clips of the cross-entropy (single-label) or of the binary cross-entropy averaged
    over classes (multi-label) of the clip probabilities."""

    probabilities: torch.Tensor
    targets: torch.Tensor
    loss: float

    @property
    def multi_label(self) -> bool:
        return self.targets.ndim == 2

    @property
    def confusion(self) -> torch.Tensor:
        """Single-label: counts ``[classes, classes]`` (int64; rows true, columns predicted)."""
        return confusion_matrix(self.probabilities.argmax(-1), self.targets, self.probabilities.shape[1])

    @property
    def score(self) -> float:
        """The task's selection metric: accuracy (single-label) or mAP (multi-label)."""
        return self.metrics()["mAP" if self.multi_label else "accuracy"]

    def metrics(self, thresholds: list[float] | None = None, per_class: bool = False) -> dict:
        """Single-label: ``accuracy, macro_f1, loss, clips``; multi-label: ``mAP, micro_f1,
        macro_f1`` (labels at or above ``thresholds``, default 0.5 each), ``d_prime, loss, clips``.
        ``per_class``: also the rows per class (``metrics.per_class`` or ``ap, f1, support``)."""
        clips = len(self.targets)
        if not self.multi_label:
            confusion = self.confusion
            result = {"accuracy": accuracy(confusion), "macro_f1": macro_f1(confusion), "loss": self.loss,
                      "clips": clips}
            return result | ({"per_class": class_rows(confusion)} if per_class else {})
        found = multi_label_metrics(self.probabilities, self.targets,
                                    None if thresholds is None else torch.tensor(thresholds, dtype=torch.float64))
        rows = found.pop("per_class")
        return found | {"loss": self.loss, "clips": clips} | ({"per_class": rows} if per_class else {})


@torch.no_grad()
def score_indices(model: nn.Module, table: FeatureTable, indices: np.ndarray, batch_size: int, world: World,
                  precision: Precision) -> Evaluation:
    """Score the clips ``indices`` of ``table`` (each process its share, gathered on every
    rank): sigmoid outputs for a multi-label table, softmax otherwise. At most ``batch_size``
    windows are read and run at once, whatever the clips' lengths (``FeatureTable.window_batches``)."""
    model.eval()
    multi = table.multi_label
    positions = world.shard(np.arange(len(indices)))  # this rank's rows
    totals = torch.zeros(len(positions), len(table.label_names), dtype=torch.float64)  # window probabilities summed
    for windows, owner in table.window_batches(indices[positions], batch_size):  # [<= batch, frames, bins], owner
        log_probs = window_log_probabilities(model, windows, batch_size, world.device, precision, multi)
        totals.index_add_(0, owner, log_probs.exp())
    counts = torch.from_numpy(np.ones(len(positions)) if table.windows is None else table.windows[indices[positions]])
    probabilities = torch.zeros(len(indices), len(table.label_names), dtype=torch.float64)
    probabilities[torch.from_numpy(positions)] = (totals / counts.double()[:, None]).log().exp()
    probabilities = world.sum(probabilities)  # [n, classes]: each row written by one rank, zeros elsewhere
    targets = _targets(table, indices)
    if not len(indices):
        return Evaluation(probabilities, targets, 0.0)
    if multi:
        loss = nn.functional.binary_cross_entropy(probabilities, targets.double())
    else:
        loss = -probabilities.gather(1, targets[:, None]).log().mean()
    return Evaluation(probabilities, targets, float(loss))


def _targets(table: FeatureTable, indices: np.ndarray) -> torch.Tensor:
    """Class ids ``[n]`` int64 or multi-hot rows ``[n, classes]`` float32 of these clips."""
    return torch.from_numpy(np.asarray(table.labels[indices], dtype=np.float32 if table.multi_label else np.int64))


def evaluate_indices(model: nn.Module, table: FeatureTable, indices: np.ndarray, batch_size: int,
                     world: World, precision: Precision) -> tuple[torch.Tensor, float]:
    """Single-label shorthand of ``score_indices``: (confusion matrix, mean cross-entropy)."""
    scored = score_indices(model, table, indices, batch_size, world, precision)
    return scored.confusion, scored.loss
