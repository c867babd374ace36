"""AdamW with weight decay by parameter rank, and a cosine schedule over all steps (no warm-up)."""

from __future__ import annotations

import torch
from torch import nn

from ...config.schema import TrainingConfig


def decays(parameter: torch.Tensor) -> bool:
    """Matrices decay; vectors, norms, biases and scalars do not. Singleton axes do not count,
    so a ``[1, 1, d]`` token is a vector and a ``[1, m, d]`` position table a matrix."""
    return sum(size > 1 for size in parameter.shape) >= 2


def make_optimizer(model: nn.Module, training: TrainingConfig, lr: float) -> torch.optim.AdamW:
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if decays(p)], "weight_decay": training.weight_decay},
              {"params": [p for p in trainable if not decays(p)], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=training.betas, eps=training.eps)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing from the peak rate to 0 over ``total_steps`` optimiser steps."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
