"""AdamW with weight decay on weight matrices only, and the learning-rate schedule over all
optimiser steps: an optional linear warm-up from 0, then cosine to 0 (the transformers
Trainer's ``cosine`` schedule with warm-up)."""

from __future__ import annotations

import math

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


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """The share of the peak rate used by optimiser step ``step`` (0-based) of ``total_steps``:
    ``step / warmup_steps`` during warm-up, then ``(1 + cos(pi * progress)) / 2`` with
    ``progress`` the share of the steps after warm-up done; 0 from ``total_steps`` on."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                   warmup_steps: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """Warm-up over ``warmup_steps``, then cosine annealing from the peak rate to 0 at
    ``total_steps`` optimiser steps (``lr_factor``)."""
    total = max(total_steps, 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup_steps))
