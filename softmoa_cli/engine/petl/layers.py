"""Single adapters and the stacked expert bank that mixtures run in one batched matmul.

Every trainable PETL module derives from PETLModule: freezing and saving find them by type,
never by name, and each reports its analytic forward FLOPs for ``m`` input tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .widths import Init

class PETLModule(nn.Module):
    """Base of every trainable PETL module."""

    def flops(self, tokens: int) -> int:
        """Forward FLOPs (2 per multiply-add) for one example of ``tokens`` tokens."""
        raise NotImplementedError


def init_projections_(down: torch.Tensor, up: torch.Tensor, biases: list[torch.Tensor], fan_in: int,
                      scheme: Init) -> None:
    """Initialise a bottleneck's projections in place.

    ``zero_up`` (default): down uniform in +-1/sqrt(fan_in) (nn.Linear's default bound), up and
    biases zero, so the adapted model starts exactly at the pretrained one while both
    projections receive gradient. ``research``: the research code's effective init, both
    projections normal with std 0.02 and zero biases.
    """
    with torch.no_grad():
        if scheme == "zero_up":
            bound = 1 / math.sqrt(fan_in)
            down.uniform_(-bound, bound)
            up.zero_()
        elif scheme == "research":
            down.normal_(0, 0.02)
            up.normal_(0, 0.02)
        else:
            raise ValueError(f"unknown init {scheme!r}; use 'zero_up' or 'research'")
        for bias in biases:
            bias.zero_()


class BottleneckAdapter(PETLModule):
    """``Linear(d -> r) -> GELU -> Linear(r -> d)`` on ``[b, m, d]``."""

    def __init__(self, dim: int, bottleneck: int, init: Init = "zero_up"):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        init_projections_(self.down.weight, self.up.weight, [self.down.bias, self.up.bias], dim, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.gelu(self.down(x)))

    def flops(self, tokens: int) -> int:
        return 2 * tokens * 2 * self.down.in_features * self.down.out_features


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConvpassAdapter(PETLModule):
    """Convpass: down, QuickGELU, 1-D conv (kernel 3) over tokens, QuickGELU, dropout, up."""

    def __init__(self, dim: int, bottleneck: int, init: Init = "zero_up", dropout: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.conv = nn.Conv1d(bottleneck, bottleneck, kernel_size=3, padding=1)
        self.act = QuickGELU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, dim)
        init_projections_(self.down.weight, self.up.weight, [self.down.bias, self.up.bias], dim, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.down(x))  # [b, m, r]
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)  # convolve along the token axis
        return self.up(self.drop(self.act(h)))

    def flops(self, tokens: int) -> int:
        d, r = self.down.in_features, self.down.out_features
        return 2 * tokens * (2 * d * r + 3 * r * r)


class ExpertBank(nn.Module):
    """``n`` bottleneck experts with stacked weights: down ``[n, d, r]``, up ``[n, r, d]``.

    Not a PETLModule itself: it is a part of a mixture, which owns the FLOP count.
    """

    def __init__(self, dim: int, experts: int, bottleneck: int, init: Init = "zero_up"):
        super().__init__()
        self.down = nn.Parameter(torch.empty(experts, dim, bottleneck))
        self.down_bias = nn.Parameter(torch.empty(experts, bottleneck))
        self.up = nn.Parameter(torch.empty(experts, bottleneck, dim))
        self.up_bias = nn.Parameter(torch.empty(experts, dim))
        init_projections_(self.down, self.up, [self.down_bias, self.up_bias], dim, init)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(experts, dim, bottleneck)."""
        return tuple(self.down.shape)

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        """Expert ``i`` on its own inputs: ``[b, n, p, d]`` -> ``[b, n, p, d]``."""
        h = F.gelu(torch.einsum("bnpd,ndr->bnpr", slots, self.down) + self.down_bias[:, None])
        return torch.einsum("bnpr,nrd->bnpd", h, self.up) + self.up_bias[:, None]

    def hidden_all(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert's hidden units on every token: ``[b, m, d]`` -> ``[b, m, n, r]``."""
        n, d, r = self.shape
        h = x @ self.down.permute(1, 0, 2).reshape(d, n * r)  # one matmul for all experts
        return F.gelu(h.unflatten(-1, (n, r)) + self.down_bias)

    def up_mixed(self, hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_i weights[..., i] * up_i(hidden[..., i, :])``: ``[b, m, n, r]``, ``[b, m, n]``
        -> ``[b, m, d]``, as one matmul over the stacked up-projections."""
        n, d, r = self.shape
        gated = (hidden * weights.unsqueeze(-1)).flatten(-2)  # [b, m, n * r]
        return gated @ self.up.reshape(n * r, d) + weights @ self.up_bias
