"""Unbalanced data: what an epoch draws (balanced sampling), how classes weigh in the loss
(class weights) and mixup. All three are computed from the training split or drawn from seeds
of (seed, fold, epoch[, step]), so a resumed run and every DDP rank draw the same.

- **Balanced sampling** (``training.balanced_sampling``), as the AST recipe's
  ``WeightedRandomSampler`` over AudioSet: a clip's weight is the sum over its labels of
  1 / (count of that label in the training split); each epoch draws as many clips as the
  training split holds, with replacement, in proportion to these weights. A clip with no label
  is never drawn.
- **Class weights** (``training.class_weights``): class c weighs 1 / (count of c in the
  training split), normalised to mean 1 over the classes present; a class absent from the
  training split weighs 1. Single-label: cross-entropy's ``weight``, a clip's loss is
  ``w[y] * nll`` (soft targets: ``-sum_c w_c p_c log q_c``). Multi-label: each class's BCE term
  is multiplied by ``w_c`` (``weight`` broadcast over the class axis, not ``pos_weight``): a
  class's optimum, its calibrated probability, does not move, only its share of the gradient
  does; its decision threshold is tuned on the validation clips as before. The batch loss stays
  the sum over clips / batch size (not PyTorch's division by the sum of the weights), so that it
  is the same on one process and over DDP ranks. With balanced sampling on as well, the
  imbalance is corrected twice and rare classes are favoured: use one or the other.
- **Mixup** (``training.mixup`` = alpha): each step draws lambda ~ Beta(alpha, alpha) and a
  permutation of the global batch, and trains on ``lam * x + (1 - lam) * x[perm]`` with the
  label vectors (multi-hot, or one-hot for single-label) mixed the same way: BCE with soft
  targets, or cross-entropy with class probabilities. One lambda per batch (Zhang et al.);
  the AST/PSLA recipe instead mixes each clip with probability ``mixup`` (their 0.5) with its
  own lambda ~ Beta(10, 10), on the waveform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..task import Task, task_of


def label_counts(labels: np.ndarray, classes: int) -> np.ndarray:
    """Clips per class: ``labels`` ``[n]`` class ids or ``[n, classes]`` multi-hot -> ``[classes]`` int64."""
    return task_of(labels).counts(labels, classes)


def sample_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """Each clip's drawing weight ``[n]`` float64: the sum over its labels of 1 / that label's count
    among ``labels`` (single-label: 1 / its class's count)."""
    counts = label_counts(labels, classes).astype(np.float64)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    vectors = task_of(labels).vectors(torch.from_numpy(np.asarray(labels)), classes).double().numpy()  # [n, classes]
    return vectors @ inverse


def class_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """``[classes]`` float64: 1 / count of each class among ``labels``, normalised to mean 1 over
    the classes that occur; classes that do not occur weigh 1."""
    counts = label_counts(labels, classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(classes)
    if present.any():
        inverse = 1.0 / counts[present]
        weights[present] = inverse / inverse.mean()
    return weights


def epoch_order(size: int, seed: int, fold: int, epoch: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Positions into the training split for one epoch, ``size`` of them: a permutation, or with
    ``weights`` (``[size]``, per clip) a draw with replacement in proportion to them; from a
    generator seeded by (seed, fold, epoch)."""
    rng = np.random.default_rng([seed, fold, epoch])
    if weights is None:
        return rng.permutation(size)
    total = weights.sum()
    if total <= 0:  # no clip has a label: nothing to balance
        return rng.integers(size, size=size)
    return rng.choice(size, size=size, replace=True, p=weights / total)


@dataclass
class Mixed:
    """A mixed batch: ``x`` the mixed features, ``targets [b, classes]`` float32 the mixed label
    vectors, ``dominant`` the targets of the clip that weighs most in each mixture (``y`` when
    lam >= 0.5, else ``y[perm]``; as ``y``: ids or multi-hot), ``lam`` and ``perm``."""

    x: torch.Tensor
    targets: torch.Tensor
    dominant: torch.Tensor
    lam: float
    perm: torch.Tensor


def mixup(x: torch.Tensor, y: torch.Tensor, classes: int, alpha: float, seed: int, task: Task) -> Mixed:
    """Mix the batch ``x [b, ...]`` with a permutation of itself, and its targets ``y`` (as
    ``task`` holds labels: ``[b]`` class ids or ``[b, classes]`` multi-hot) as label vectors the
    same way, on their device; lambda ~ Beta(alpha,
    alpha) and the permutation drawn, in that order, from ``numpy.random.default_rng(seed)``
    (on the CPU: the same mixture on every device)."""
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x))).to(x.device)
    hot = task.vectors(y, classes)  # [b, classes]: one-hot or multi-hot
    return Mixed(lam * x + (1 - lam) * x[perm], lam * hot + (1 - lam) * hot[perm], y if lam >= 0.5 else y[perm],
                 lam, perm)
