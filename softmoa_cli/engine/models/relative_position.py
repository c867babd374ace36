"""WavLM's gated relative position bias (Chen et al. 2022, section 2.2).

One learned bias per head and per bucket of relative distance (exact buckets for short
distances, logarithmic ones up to ``max_distance``, one side each for keys before and after the
query) is computed once per forward (``RelativePositionBias``) and passed to every block's
attention, which gates it per query with a function of that query's input
(``GatedBiasAttention``) and adds it to its attention logits.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import Attention


def relative_buckets(tokens: int, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bucket of key j relative to query i, ``[tokens, tokens]`` (long).

    Half of the buckets are for keys after the query, half for keys at or before it. In each
    half, distances below a quarter of ``num_buckets`` get a bucket each; longer ones share
    logarithmically spaced buckets up to ``max_distance`` (beyond it: the last bucket).
    """
    position = torch.arange(tokens)
    relative = position[None, :] - position[:, None]  # [i, j] = j - i
    half = num_buckets // 2
    exact = half // 2
    distance = relative.abs()
    logarithmic = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + logarithmic * (half - exact)).long().clamp(max=half - 1)
    return (relative > 0).long() * half + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """The ungated bias ``[1, h, m, m]`` for ``m`` tokens: a learned value per head and bucket."""

    def __init__(self, heads: int, num_buckets: int = 320, max_distance: int = 800):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.embed = nn.Embedding(num_buckets, heads)

    def forward(self, tokens: int) -> torch.Tensor:
        buckets = relative_buckets(tokens, self.num_buckets, self.max_distance).to(self.embed.weight.device)
        return self.embed(buckets).permute(2, 0, 1).unsqueeze(0)  # [m, m, h] -> [1, h, m, m]


class GatedBiasAttention(Attention):
    """Attention whose logits get the position bias scaled per head and query by a gate
    ``a * (c * g - 1) + 2``, where ``a`` and ``g`` are sigmoids of sums of a small Linear of the
    query's input (per head, ``d / h -> 8``, summed in two groups of 4) and ``c`` a learned
    constant per head. The gate lies in (1, 2) at ``c`` = 1."""

    def __init__(self, dim: int, heads: int):
        super().__init__(dim, heads)
        self.gate = nn.Linear(dim // heads, 8)
        self.gate_scale = nn.Parameter(torch.ones(1, heads, 1, 1))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        b, m, _ = x.shape
        groups = self.gate(self.split_heads(x)).view(b, self.heads, m, 2, 4).sum(-1)  # [b, h, m, 2]
        a, g = groups.sigmoid().chunk(2, dim=-1)  # [b, h, m, 1] each
        gate = a * (g * self.gate_scale - 1.0) + 2.0
        return super().forward(x, gate * position_bias)  # bias [b, h, m, m]
