"""What a configuration costs: parameters and analytic forward FLOPs per example.

FLOPs count 2 per multiply-add of the matmuls and convolutions (LayerNorm, softmax and
activations are left out: they are under 1% at AST sizes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .models.ast import AST
from .petl.layers import PETLModule


@dataclass(frozen=True)
class Cost:
    trainable_params: int
    total_params: int
    backbone_flops: int  # per example, forward
    petl_flops: int  # per example, forward

    @property
    def flops(self) -> int:
        return self.backbone_flops + self.petl_flops

    def to_dict(self) -> dict:
        return asdict(self) | {"flops": self.flops}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def backbone_flops(model: AST) -> int:
    """Analytic forward FLOPs of the AST itself (patch embedding, blocks, head)."""
    c = model.config
    freq, time = c.grid
    m = c.num_tokens
    patch = freq * time * c.dim * c.patch_size ** 2
    attention = 4 * m * c.dim * c.dim + 2 * m * m * c.dim  # q, k, v, proj; scores and weighted sum
    mlp = 2 * m * c.dim * c.mlp_dim
    head = c.dim * model.head.fc.out_features
    return 2 * (patch + c.depth * (attention + mlp) + head)


def petl_flops(model: AST) -> int:
    """Forward FLOPs of every PETL module for the model's token count."""
    m = model.config.num_tokens
    return sum(module.flops(m) for module in model.modules() if isinstance(module, PETLModule))


def cost(model: AST) -> Cost:
    trainable, total = count_parameters(model)
    return Cost(trainable, total, backbone_flops(model), petl_flops(model))
