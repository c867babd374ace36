"""Where an adapter sits: wrappers around a block's sub-layer (``attn`` or ``mlp``).

The block keeps its two residual lines; a wrapper replaces the sub-layer it adapts:
- parallel:   ``out = sublayer(y) + adapter(y)`` where ``y`` is the sub-layer input (the
  LayerNorm output in a pre-LN block, the block input in a post-LN one);
- sequential: ``s = sublayer(y); out = s + adapter(s)`` (or ``adapter(s)`` without the
  inner residual).
A sub-layer's extra arguments (WavLM's attention takes the position bias) pass through to it;
the adapter reads only ``y`` (or ``s``).
"""

from __future__ import annotations

import torch
from torch import nn


class ParallelSite(nn.Module):
    def __init__(self, base: nn.Module, adapter: nn.Module):
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, y: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.base(y, *args, **kwargs) + self.adapter(y)


class SequentialSite(nn.Module):
    def __init__(self, base: nn.Module, adapter: nn.Module, residual: bool = True):
        super().__init__()
        self.base = base
        self.adapter = adapter
        self.residual = residual

    def forward(self, y: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        s = self.base(y, *args, **kwargs)
        return s + self.adapter(s) if self.residual else self.adapter(s)


SUBLAYER = {"mhsa": ("attn", "norm1"), "ffn": ("mlp", "norm2")}
"""Location -> (the block's sub-layer attribute, the LayerNorm that feeds it)."""
