"""Audio Spectrogram Transformer (Gong et al. 2021) as a small, readable torch module.

Input: normalised log-mel features ``[batch, frames, mel_bins]`` (frames = ``max_length``).
Patches of 16x16 with stride (fstride, tstride) over the [mel_bins x frames] image,
[CLS] and [DIST] tokens, learned position embeddings, pre-LayerNorm ViT blocks.
Layout follows timm: ``forward_features`` -> tokens, ``forward_head`` -> logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from timm.layers import Mlp, trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class ASTConfig:
    """Backbone shape. Defaults are the AudioSet AST (ViT/DeiT-Base, 1024 frames)."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    num_mel_bins: int = 128
    max_length: int = 1024
    num_classes: int = 527
    pool: str = "cls_dist"  # "cls_dist": mean of [CLS] and [DIST]; "mean": mean of all tokens
    head_norm: bool = True  # LayerNorm before the head's Linear (the AudioSet head has one)
    eps: float = 1e-12  # LayerNorm eps of the blocks and the final norm
    head_eps: float | None = None  # the head's LayerNorm eps; None: same as eps (the AST authors' head uses 1e-5)
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

    @property
    def head_norm_eps(self) -> float:
        """LayerNorm eps of the head (``head_eps``, or ``eps`` when unset)."""
        return self.eps if self.head_eps is None else self.head_eps

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> "ASTConfig":
        return replace(self, **changes)


class Attention(nn.Module):
    """Multi-head self-attention with separate q, k, v projections (LoRA wraps them)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, d = x.shape
        # [b, m, d] -> [b, heads, m, d / heads]
        q, k, v = (p(x).view(b, m, self.heads, d // self.heads).transpose(1, 2) for p in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # [b, heads, m, d / heads]
        return self.proj(out.transpose(1, 2).reshape(b, m, d))


class Block(nn.Module):
    """Pre-LN transformer block. PETL methods wrap ``attn`` and ``mlp`` (see petl/sites.py)."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.dim, eps=config.eps)
        self.attn = Attention(config.dim, config.heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(config.dim, eps=config.eps)
        self.mlp = Mlp(config.dim, config.mlp_dim, act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClassifierHead(nn.Module):
    """Pool tokens ``[b, m, d]`` and classify: ``[b, classes]``."""

    def __init__(self, dim: int, num_classes: int, pool: str = "mean", norm: bool = False, eps: float = 1e-12):
        super().__init__()
        if pool not in ("cls_dist", "mean"):
            raise ValueError(f"pool must be 'cls_dist' or 'mean', not {pool!r}")
        self.pool = pool
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = tokens[:, :2].mean(dim=1) if self.pool == "cls_dist" else tokens.mean(dim=1)  # [b, d]
        return self.fc(self.norm(pooled))


class AST(nn.Module):
    """The Audio Spectrogram Transformer: ``[b, frames, mel_bins]`` -> ``[b, classes]``."""

    def __init__(self, config: ASTConfig = ASTConfig()):
        super().__init__()
        self.config = config
        d = config.dim
        self.patch_embed = nn.Conv2d(1, d, config.patch_size, stride=(config.fstride, config.tstride))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, d))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=config.eps)
        self.head = ClassifierHead(d, config.num_classes, config.pool, config.head_norm, config.head_norm_eps)
        self.activation_checkpointing = False  # see set_activation_checkpointing
        self._init_weights()

    def _init_weights(self) -> None:
        for tensor in (self.cls_token, self.dist_token, self.pos_embed):
            trunc_normal_(tensor, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[b, frames, mel_bins]`` -> normalised tokens ``[b, 2 + patches, d]``."""
        return self.forward_patches(self.embed_patches(x))

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[b, frames, mel_bins]`` -> patch embeddings ``[b, freq * time, d]``, frequency-major."""
        patches = self.patch_embed(x.transpose(1, 2).unsqueeze(1))  # [b, d, freq, time]
        return patches.flatten(2).transpose(1, 2)

    def forward_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``[b, patches, d]`` -> normalised tokens ``[b, 2 + patches, d]``."""
        b = patches.shape[0]
        special = torch.cat([self.cls_token, self.dist_token], dim=1).expand(b, -1, -1)  # [b, 2, d]
        x = torch.cat([special, patches], dim=1) + self.pos_embed
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # The last block's activations are used as soon as the backward starts: recomputing them saves nothing.
            if recompute and i < last and _needs_backward(block, x):
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, pool: str = "mean", norm: bool = False) -> None:
        """A new head for a downstream task (the PETL recipe: Linear on the mean of all tokens)."""
        c = self.config
        self.head = ClassifierHead(c.dim, num_classes, pool, norm, c.head_norm_eps).to(self.pos_embed.device)
        trunc_normal_(self.head.fc.weight, std=0.02)
        nn.init.zeros_(self.head.fc.bias)
        self.config = c.replace(num_classes=num_classes, pool=pool, head_norm=norm)

    def set_max_length(self, max_length: int) -> None:
        """Adapt to another input length, keeping the pretrained position embeddings."""
        new = self.config.replace(max_length=max_length)
        pos = resize_pos_embed(self.pos_embed.data, self.config.grid, new.grid)
        self.pos_embed = nn.Parameter(pos, requires_grad=self.pos_embed.requires_grad)
        self.config = new


def _needs_backward(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether the backward passes through ``block``: its input or one of its weights needs a gradient."""
    return x.requires_grad or any(param.requires_grad for param in block.parameters())


def set_activation_checkpointing(model: nn.Module, on: bool) -> None:
    """Make every AST inside ``model`` recompute its blocks' activations in the backward pass.

    Each entry of ``AST.blocks`` (with whatever PETL modules were injected into it or wrapped
    around it) then keeps only its input ``[b, tokens, d]`` in the forward and runs again
    during the backward (``torch.utils.checkpoint``, non-reentrant, RNG state preserved, so
    dropout draws the same masks). The last block is the exception: the backward needs its
    activations first, so they are kept (the peak is the same, one recompute less). Only
    while training with grad enabled: an eval or no_grad forward is unchanged. Costs up to one
    more forward of the blocks per training step.
    """
    for module in model.modules():
        if isinstance(module, AST):
            module.activation_checkpointing = on


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
