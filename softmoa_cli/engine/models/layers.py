"""Building blocks every backbone shares: attention, the transformer block and the classifier head.

A block is two residual lines around its sub-layers ``attn`` and ``mlp`` (timm's split); the
PETL methods wrap those sub-layers in place (``petl/sites.py``) and LoRA wraps the attention's
``q``, ``k``, ``v`` and ``proj`` Linears, so every backbone built from these parts takes every
method. Axis letters: b batch, m tokens, d width, h heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention ``[b, m, d] -> [b, m, d]`` with separate ``q``, ``k``, ``v``
    projections and the output projection ``proj``.

    ``key_bias`` False leaves ``k`` without a bias (Whisper). ``bias``, when given to forward,
    is added to the attention logits after the 1/sqrt(d/h) scaling: ``[b or 1, h, m, m]``.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, key_bias: bool | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias if key_bias is None else key_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, m, d] -> [b, h, m, d / h]``."""
        b, m, d = x.shape
        return x.view(b, m, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        b, m, d = x.shape
        q, k, v = (self.split_heads(p(x)) for p in (self.q, self.k, self.v))  # [b, h, m, d / h]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [b, h, m, d / h]
        return self.proj(out.transpose(1, 2).reshape(b, m, d))


class Block(nn.Module):
    """A transformer block over ``[b, m, d]``: ``attn`` (built by the caller), then an MLP of
    width ``mlp_dim`` (GELU), each with a residual line and a LayerNorm.

    ``pre_norm`` True (ViT, Whisper, wav2vec2 large): ``x + attn(norm1(x))``, then
    ``x + mlp(norm2(x))``. False (post-LN, wav2vec2/HuBERT/WavLM base): ``norm1(x + attn(x))``,
    then ``norm2(x + mlp(x))``. Extra forward arguments go to ``attn`` (WavLM's position bias).
    """

    def __init__(self, dim: int, mlp_dim: int, attn: nn.Module, eps: float, pre_norm: bool = True):
        super().__init__()
        self.pre_norm = pre_norm
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim, act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, *attn_args) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.norm1(x), *attn_args)
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x, *attn_args))
        return self.norm2(x + self.mlp(x))


def block_macs(tokens: int, dim: int, mlp_dim: int) -> int:
    """Multiply-adds of one block's matmuls for ``tokens`` tokens: q, k, v, proj; the attention
    scores and weighted sum; the MLP."""
    return 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * mlp_dim


class ClassifierHead(nn.Module):
    """Pool tokens ``[b, m, d]`` to ``[b, d]``, then norm, projector and Linear: ``[b, classes]``.

    ``pool``: ``mean`` of all tokens, or ``cls_dist`` (the mean of AST's first two tokens).
    ``norm``: a LayerNorm on the pooled vector (AST's AudioSet head). ``proj_dim``: a Linear
    ``d -> proj_dim`` before the classifier (transformers' ``projector`` of its audio
    classifiers, which project every token and then average: the same function, since the
    mean commutes with a Linear).
    """

    def __init__(self, dim: int, num_classes: int, pool: str = "mean", norm: bool = False, eps: float = 1e-12,
                 proj_dim: int | None = None):
        super().__init__()
        if pool not in ("cls_dist", "mean"):
            raise ValueError(f"pool must be 'cls_dist' or 'mean', not {pool!r}")
        self.pool = pool
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else nn.Identity()
        self.proj = nn.Linear(dim, proj_dim) if proj_dim else nn.Identity()
        self.fc = nn.Linear(proj_dim or dim, num_classes)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[b, m, d] -> [b, d]``."""
        return tokens[:, :2].mean(dim=1) if self.pool == "cls_dist" else tokens.mean(dim=1)

    def forward(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``[b, classes]``; ``pre_logits``: the pooled vector ``[b, d]`` before norm,
        projector and Linear."""
        pooled = self.pooled(tokens)
        return pooled if pre_logits else self.fc(self.proj(self.norm(pooled)))

    def macs(self) -> int:
        """Multiply-adds of the projector and the Linear for one example."""
        return sum(m.in_features * m.out_features for m in (self.proj, self.fc) if isinstance(m, nn.Linear))
