"""Scoring clips: the precision context, window probabilities in bounded batches, a clip's
scores as the mean over its windows (the window rule of ``data/features.py``), and the
confusion matrix and loss of a set of clips. Training, ``evaluate`` and ``predict`` all score
through these functions, so a clip gets one score whichever command asks.

Every result leaves here on the CPU: metrics never mix the model's device with the labels'.
Scores are computed in fp32 whatever precision the model trained in (``Precision("fp32")``),
so a run's own validation and test, ``evaluate`` and ``predict`` agree on every device.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..data.table import FeatureTable
from .distributed import World
from .metrics import confusion_matrix


class Precision:
    """Autocast context for the configured precision ("auto": bf16 on CUDA, fp32 on CPU)."""

    def __init__(self, name: str, device: torch.device):
        self.bf16 = name == "bf16" or (name == "auto" and device.type == "cuda")
        self.device_type = device.type

    def __call__(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)


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


@torch.no_grad()
def evaluate_indices(model: nn.Module, table: FeatureTable, indices: np.ndarray, batch_size: int,
                     world: World, precision: Precision) -> tuple[torch.Tensor, float]:
    """Confusion matrix ``[classes, classes]`` (CPU, int64) and mean cross-entropy of the clip
    scores over ``indices``, each process scoring its share of the clips."""
    model.eval()
    classes = len(table.label_names)
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    loss = torch.zeros((), dtype=torch.float64)
    mine = world.shard(indices)
    for start in range(0, len(mine), batch_size):
        clips = mine[start:start + batch_size]
        windows, owner = table.clip_windows(clips)  # [w, frames, bins], [w]
        log_probs = clip_log_probabilities(window_log_probabilities(model, windows, batch_size, world.device, precision),
                                           owner, len(clips))  # [clips, classes]
        labels = torch.from_numpy(np.asarray(table.labels[clips], dtype=np.int64))
        loss -= log_probs.gather(1, labels[:, None]).sum()
        confusion += confusion_matrix(log_probs.argmax(-1), labels, classes)
    confusion, loss = world.sum(confusion), world.sum(loss)
    return confusion, float(loss) / max(int(confusion.sum()), 1)
