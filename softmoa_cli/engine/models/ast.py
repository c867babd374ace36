"""Audio Spectrogram Transformer (Gong et al. 2021) as a small, readable torch module.

Input: normalised log-mel features ``[batch, frames, mel_bins]`` (frames = ``max_length``).
Patches of 16x16 with stride (fstride, tstride) over the [mel_bins x frames] image,
[CLS] and [DIST] tokens, learned position embeddings, pre-LayerNorm ViT blocks.
Layout follows timm: ``forward_features`` -> tokens, ``forward_head`` -> logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from .backbone import Backbone, BackboneConfig
from .layers import Attention, Block


@dataclass(frozen=True)
class ASTConfig(BackboneConfig):
    """Backbone shape. Defaults are the AudioSet AST (ViT/DeiT-Base, 1024 frames)."""

    max_length: int = 1024
    num_classes: int = 527
    pool: str = "cls_dist"  # "cls_dist": mean of [CLS] and [DIST]; "mean": mean of all tokens
    head_norm: bool = True  # LayerNorm before the head's Linear (the AudioSet head has one)
    eps: float = 1e-12  # LayerNorm eps of the blocks and the final norm
    head_eps: float | None = None  # the head's LayerNorm eps; None: same as eps (the AST authors' head uses 1e-5)
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    num_mel_bins: int = 128
    qkv_bias: bool = True

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (frequency patches, time patches)."""
        freq = (self.num_mel_bins - self.patch_size) // self.fstride + 1
        time = (self.max_length - self.patch_size) // self.tstride + 1
        return freq, time

    @property
    def num_tokens(self) -> int:
        """Sequence length: patches plus [CLS] and [DIST]."""
        freq, time = self.grid
        return freq * time + 2


class AST(Backbone):
    """The Audio Spectrogram Transformer: ``[b, frames, mel_bins]`` -> ``[b, classes]``."""

    family = "ast"
    front_end = "fbank"

    def __init__(self, config: ASTConfig = ASTConfig()):
        super().__init__(config)
        d = config.dim
        self.patch_embed = nn.Conv2d(1, d, config.patch_size, stride=(config.fstride, config.tstride))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, d))
        self.blocks = nn.ModuleList(Block(d, config.mlp_dim, Attention(d, config.heads, config.qkv_bias), config.eps)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=config.eps)
        self.head = self.classifier_head()
        self._init_weights()

    def _init_weights(self) -> None:
        for tensor in (self.cls_token, self.dist_token, self.pos_embed):
            trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[b, frames, mel_bins]`` -> tokens ``[b, 2 + patches, d]`` with positions."""
        return self.add_special_tokens(self.embed_patches(x))

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[b, frames, mel_bins]`` -> patch embeddings ``[b, freq * time, d]``, frequency-major."""
        patches = self.patch_embed(x.transpose(1, 2).unsqueeze(1))  # [b, d, freq, time]
        return patches.flatten(2).transpose(1, 2)

    def add_special_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``[b, patches, d]`` -> ``[b, 2 + patches, d]``: [CLS], [DIST], positions."""
        special = torch.cat([self.cls_token, self.dist_token], dim=1).expand(patches.shape[0], -1, -1)  # [b, 2, d]
        return torch.cat([special, patches], dim=1) + self.pos_embed

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``[b, patches, d]`` -> normalised tokens ``[b, 2 + patches, d]``."""
        return self.forward_tokens(self.add_special_tokens(patches))

    def input_shape(self, max_length: int) -> tuple[int, ...]:
        return (max_length, self.config.num_mel_bins)

    def num_tokens(self) -> int:
        return self.config.num_tokens

    def embed_macs(self) -> int:
        c = self.config
        freq, time = c.grid
        return freq * time * c.dim * c.patch_size ** 2

    def set_max_length(self, max_length: int) -> None:
        """Adapt to another input length, keeping the pretrained position embeddings."""
        new = self.config.replace(max_length=max_length)
        pos = resize_pos_embed(self.pos_embed.data, self.config.grid, new.grid)
        self.pos_embed = nn.Parameter(pos, requires_grad=self.pos_embed.requires_grad)
        self.config = new


def resize_pos_embed(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Adapt ``pos [1, 2 + f * t, d]`` from grid (f, t) to (f', t') as the AST recipe does.

    Along each axis: a shorter axis keeps the centre of the pretrained values, a longer one
    is linearly interpolated (bilinear over both axes). [CLS] and [DIST] are kept.
    """
    if old_grid == new_grid:
        return pos.clone()
    special, patches = pos[:, :2], pos[:, 2:]
    d = pos.shape[-1]
    grid = patches.transpose(1, 2).reshape(1, d, *old_grid)  # [1, d, f, t]
    for axis, (old, new) in enumerate(zip(old_grid, new_grid)):
        if new < old:
            start = old // 2 - new // 2
            grid = grid.narrow(2 + axis, start, new)
        elif new > old:
            size = list(grid.shape[2:])
            size[axis] = new
            grid = F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)
    patches = grid.reshape(1, d, -1).transpose(1, 2)
    return torch.cat([special, patches], dim=1).contiguous()
