"""What a configuration costs: parameters and analytic forward FLOPs per example.

FLOPs count 2 per multiply-add of the matmuls and convolutions (LayerNorm, softmax and
activations are left out: they are under 1% at AST sizes); each backbone counts its own
(``Backbone.flops``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .models.backbone import Backbone
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


def petl_flops(model: Backbone) -> int:
    """Forward FLOPs of every PETL module for the model's token count."""
    m = model.num_tokens()
    return sum(module.flops(m) for module in model.modules() if isinstance(module, PETLModule))


def cost(model: Backbone) -> Cost:
    trainable, total = count_parameters(model)
    return Cost(trainable, total, model.flops(), petl_flops(model))
