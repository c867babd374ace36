"""LoRA: a low-rank update beside a frozen Linear, ``y = W x + (alpha / rank) * B A x``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import PETLModule


class LoRADelta(PETLModule):
    """The trainable low-rank pair: A ``[rank, in]`` (random), B ``[out, rank]`` (zero)."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        self.a = nn.Parameter(torch.empty(rank, in_features))
        self.b = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.a.t() @ self.b.t()) * self.scaling

    def flops(self, tokens: int) -> int:
        rank, d_in = self.a.shape
        return 2 * tokens * rank * (d_in + self.b.shape[0])


class LoRALinear(nn.Module):
    """A frozen ``base`` Linear plus its LoRADelta."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora = LoRADelta(base.in_features, base.out_features, rank, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora(x)

    def merged(self) -> nn.Linear:
        """One Linear computing the same function: weight ``W + (alpha / rank) B A`` (summed in
        float64, then cast back), the base's bias. Equal to this module up to float rounding."""
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            delta = self.lora.b.double() @ self.lora.a.double() * self.lora.scaling  # [out, in]
            linear.weight.copy_(base.weight.double() + delta)
            if base.bias is not None:
                linear.bias.copy_(base.bias)
        return linear
