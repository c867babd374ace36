"""Whisper's encoder (Radford et al. 2022) as a backbone: log-mels in, tokens out.

Input: Whisper log-mel features ``[batch, frames, n_mels]`` (``data/frontends.whisper_log_mel``;
80 mel bins, 128 for large-v3), frames of 10 ms. A conv stem (kernel 3, then kernel 3 with
stride 2, GELU after each) halves the frames into tokens; the sinusoidal position weights the
checkpoint stores are added, sliced to the tokens there are, so a clip shorter than Whisper's 30 s
runs as it is instead of padded to 30 s (``max_length`` frames -> ``max_length // 2`` tokens,
at most the checkpoint's positions). Pre-LN blocks (key projection without bias), final LayerNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SoftmoaError
from .backbone import Backbone, BackboneConfig
from .layers import Attention, Block


@dataclass(frozen=True)
class WhisperConfig(BackboneConfig):
    """The encoder's shape; defaults are whisper-small's (768 wide, 12 blocks, 30 s)."""

    num_mel_bins: int = 80
    positions: int = 1500  # transformers' max_source_positions: tokens of 30 s
    max_length: int = 3000


def sinusoids(positions: int, dim: int) -> torch.Tensor:
    """Whisper's position table ``[positions, dim]``: sines then cosines of the position times
    ``dim / 2`` inverse timescales spaced geometrically from 1 to 1/10000."""
    half = dim // 2
    inverse = torch.exp(-math.log(10_000) / (half - 1) * torch.arange(half, dtype=torch.float32))  # [half]
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * inverse  # [positions, half]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def whisper_tokens(frames: int) -> int:
    """Tokens of ``frames`` frames after the stride-2 conv (kernel 3, padding 1)."""
    return (frames - 1) // 2 + 1


class Whisper(Backbone):
    """Whisper's encoder: ``[b, frames, n_mels]`` -> ``[b, classes]``."""

    family = "whisper"
    front_end = "whisper"

    def __init__(self, config: WhisperConfig = WhisperConfig()):
        super().__init__(config)
        d = config.dim
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        # Frozen: the checkpoint's table (transformers never trains it either).
        self.register_buffer("pos_embed", sinusoids(config.positions, d))
        self.blocks = nn.ModuleList(
            Block(d, config.mlp_dim, Attention(d, config.heads, key_bias=False), config.eps)
            for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=config.eps)
        self.head = self.classifier_head()
        self._check_length(config.max_length)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mels ``[b, frames, n_mels]`` -> tokens ``[b, ceil(frames / 2), d]`` with positions."""
        h = F.gelu(self.conv1(x.transpose(1, 2)))  # [b, d, frames]
        h = F.gelu(self.conv2(h)).transpose(1, 2)  # [b, m, d]
        m = h.shape[1]
        if m > self.config.positions:
            raise ValueError(f"{x.shape[1]} frames give {m} tokens; this Whisper encoder has {self.config.positions}")
        return h + self.pos_embed[:m]

    def input_shape(self, max_length: int) -> tuple[int, ...]:
        return (max_length, self.config.num_mel_bins)

    def num_tokens(self) -> int:
        return whisper_tokens(self.config.max_length)

    def embed_macs(self) -> int:
        c = self.config
        return 3 * c.max_length * c.num_mel_bins * c.dim + 3 * self.num_tokens() * c.dim * c.dim

    def set_max_length(self, max_length: int) -> None:
        """Windows of ``max_length`` frames: the position table is sliced at each forward, so only
        the limit is checked."""
        self._check_length(max_length)
        self.config = self.config.replace(max_length=max_length)

    def _check_length(self, max_length: int) -> None:
        positions = self.config.positions
        if whisper_tokens(max_length) > positions:
            raise SoftmoaError(f"max_length {max_length}: this Whisper encoder has {positions} positions, "
                               f"so windows of at most {2 * positions} frames ({2 * positions / 100:g} s)")
