"""AdamW with weight decay on weight matrices only, and a cosine schedule over all steps (no warm-up)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainingConfig

# Never decayed whatever their rank: an ExpertBank stacks its biases as [n, r] and [n, d],
# and the AST's class tokens are [1, 1, d].
PLAIN_SUFFIXES = ("bias", "_token")


def decays(name: str, parameter: torch.Tensor) -> bool:
    """Weight matrices (and kernels and tables: two or more axes) decay; biases, tokens, norms
    and scalars do not. By name and rank, not by size, so a one-row matrix (bottleneck 1) decays."""
    return parameter.dim() >= 2 and not name.endswith(PLAIN_SUFFIXES)


def make_optimizer(model: nn.Module, training: TrainingConfig, lr: float) -> torch.optim.AdamW:
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for name, p in trainable if decays(name, p)], "weight_decay": training.weight_decay},
              {"params": [p for name, p in trainable if not decays(name, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=training.betas, eps=training.eps)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing from the peak rate to 0 over ``total_steps`` optimiser steps."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
