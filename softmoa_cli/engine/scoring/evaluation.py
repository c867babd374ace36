"""Scoring clips: window probabilities in bounded batches, a clip's scores as the mean over its
windows (the window rule of ``data/features.py``), and a set of clips scored (``score_indices``:
probabilities, targets, loss) with the metrics of its task (``engine/task.py``). Training,
``evaluate`` and ``predict`` all score through these functions, so a clip gets one score
whichever command asks.

Every result leaves here on the CPU: metrics never mix the model's device with the labels'.
Scores are computed in fp32 whatever precision the model trained in (``Precision("fp32")``),
so a run's own validation and test, ``evaluate`` and ``predict`` agree on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.table import FeatureTable
from ..devices import Precision
from ..distributed import World
from ..task import Task


@torch.no_grad()
def window_log_probabilities(model: nn.Module, windows: torch.Tensor, batch_size: int, device: torch.device,
                             task: Task, precision: Precision | None = None) -> torch.Tensor:
    """``windows [w, ...]`` -> the task's log-probabilities ``[w, classes]`` (float64, CPU; log-softmax or
    log-sigmoid), at most ``batch_size`` windows through the model at once, so memory stays flat on
    long files."""
    precision = precision or Precision("fp32", device)
    parts = []
    for start in range(0, len(windows), batch_size):
        x = windows[start:start + batch_size].to(device, torch.float32, non_blocking=True)
        with precision():
            logits = model(x).float()  # [batch, classes]
        parts.append(task.log_probabilities(logits.double()).cpu())
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
    """A set of clips scored by the window rule for ``task``: ``probabilities [n, classes]``
    (float64, CPU; averaged over each clip's windows; every rank holds every row), the
    ``targets`` (as the task holds labels) and ``loss``, the task's mean clip loss."""

    probabilities: torch.Tensor
    targets: torch.Tensor
    loss: float
    task: Task

    @property
    def score(self) -> float:
        """The task's selection score (``task.metric``: accuracy, or mAP)."""
        return self.metrics()[self.task.metric]

    def metrics(self, thresholds: list[float] | None = None, per_class: bool = False) -> dict:
        """The task's metrics (at ``thresholds`` where it has them), ``loss`` and ``clips``;
        ``per_class`` adds the task's per-class rows."""
        return self.task.metrics(self.probabilities, self.targets, thresholds, per_class) | {
            "loss": self.loss, "clips": len(self.targets)}


@torch.no_grad()
def score_indices(model: nn.Module, table: FeatureTable, indices: np.ndarray, batch_size: int, world: World,
                  precision: Precision) -> Evaluation:
    """Score the clips ``indices`` of ``table`` (each process its share, gathered on every
    rank) for the table's task. At most ``batch_size``
    windows are read and run at once, whatever the clips' lengths (``FeatureTable.window_batches``)."""
    model.eval()
    task = table.task
    positions = world.shard(np.arange(len(indices)))  # this rank's rows
    totals = torch.zeros(len(positions), len(table.label_names), dtype=torch.float64)  # window probabilities summed
    for windows, owner in table.window_batches(indices[positions], batch_size):  # [<= batch, *window], owner
        log_probs = window_log_probabilities(model, windows, batch_size, world.device, task, precision)
        totals.index_add_(0, owner, log_probs.exp())
    counts = torch.from_numpy(np.ones(len(positions)) if table.windows is None else table.windows[indices[positions]])
    probabilities = torch.zeros(len(indices), len(table.label_names), dtype=torch.float64)
    probabilities[torch.from_numpy(positions)] = (totals / counts.double()[:, None]).log().exp()
    probabilities = world.sum(probabilities)  # [n, classes]: each row written by one rank, zeros elsewhere
    targets = task.targets(table.labels[indices])
    loss = task.clip_loss(probabilities, targets) if len(indices) else 0.0
    return Evaluation(probabilities, targets, loss, task)
