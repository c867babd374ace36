"""The backbone interface, stated once: what every family (AST, Whisper's encoder, wav2vec2,
HuBERT, WavLM) provides, so every PETL method works on every backbone.

A backbone turns one input window into tokens ``[b, m, d]`` (``embed``), runs them through
``blocks`` (one loop, with activation checkpointing) and a final ``norm``, and classifies them
with ``head`` (pool, optional norm and projector, Linear). Windows are measured in frames of
10 ms (``max_length``) whatever the input: ``input_shape(max_length)`` says what one window is
(log-mel frames, or ``max_length * 160`` samples at 16 kHz). timm's API: ``forward_features``,
``forward_head(tokens, pre_logits)``, ``forward_intermediates``, ``reset_classifier``.

What the PETL code relies on: ``config.dim``; ``blocks``, each with ``norm1``, ``attn`` (Linears
``q``, ``k``, ``v``, ``proj``), ``norm2``, ``mlp`` (``fc1``, ``fc2``); ``norm``; ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
from timm.layers import trunc_normal_
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import ClassifierHead, block_macs

SAMPLES_PER_FRAME = 160  # one frame of 10 ms at 16 kHz


@dataclass(frozen=True)
class BackboneConfig:
    """What every backbone's config holds; each family's config adds its own fields.

    ``max_length``: the input window in frames of 10 ms. Head: ``num_classes``, ``pool``
    (``mean`` or ``cls_dist``), ``head_norm`` (a LayerNorm before the Linear, eps ``head_eps``
    or ``eps``), ``head_proj`` (a projector Linear of that width before it). ``weighted_layer_sum``:
    the features are a learned softmax-weighted sum of the embedding output and every block's
    output (SUPERB's recipe; ``layer_weights``, one per layer).
    """

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    max_length: int = 1024
    num_classes: int = 527
    pool: str = "mean"
    head_norm: bool = False
    head_proj: int | None = None
    weighted_layer_sum: bool = False
    eps: float = 1e-5
    head_eps: float | None = None

    @property
    def head_norm_eps(self) -> float:
        """LayerNorm eps of the head (``head_eps``, or ``eps`` when unset)."""
        return self.eps if self.head_eps is None else self.head_eps

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **changes) -> BackboneConfig:
        return replace(self, **changes)


class Backbone(nn.Module):
    """Base of every backbone. A family sets ``family`` and ``front_end``, builds ``blocks``,
    ``norm`` and ``head`` (``classifier_head``) and provides ``embed``, ``input_shape``,
    ``num_tokens``, ``embed_macs`` and ``set_max_length``; ``attn_args`` where its attention
    takes more than the tokens."""

    family: ClassVar[str]
    front_end: ClassVar[str]
    """The features it takes (``data.features.FeatureConfig.kind``): ``fbank``, ``whisper`` or ``waveform``."""
    normed_last_state: ClassVar[bool] = True
    """Whether the weighted layer sum takes the last block's output after ``norm`` (the last of
    transformers' ``hidden_states`` for this family) or as the block gave it."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        self.activation_checkpointing = False  # see set_activation_checkpointing
        layers = config.depth + 1
        weights = nn.Parameter(torch.full((layers,), 1 / layers)) if config.weighted_layer_sum else None
        self.register_parameter("layer_weights", weights)

    # ------------------------------------------------------------ what each family provides

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """One batch of input windows -> the tokens entering the first block ``[b, m, d]``."""
        raise NotImplementedError

    def attn_args(self, tokens: torch.Tensor) -> tuple:
        """Extra arguments every block passes to its attention (none by default)."""
        return ()

    def input_shape(self, max_length: int) -> tuple[int, ...]:
        """Shape of one input window of ``max_length`` frames of 10 ms, without the batch axis."""
        raise NotImplementedError

    def num_tokens(self) -> int:
        """Tokens ``m`` of one window of ``config.max_length`` frames."""
        raise NotImplementedError

    def embed_macs(self) -> int:
        """Multiply-adds of ``embed`` for one window."""
        raise NotImplementedError

    def blocks_macs(self) -> int:
        """Multiply-adds of the blocks for one window (a family whose blocks do more adds it)."""
        c = self.config
        return c.depth * block_macs(self.num_tokens(), c.dim, c.mlp_dim)

    def set_max_length(self, max_length: int) -> None:
        """Adapt the position information to windows of ``max_length`` frames."""
        raise NotImplementedError

    # ------------------------------------------------------------ shared

    def classifier_head(self) -> ClassifierHead:
        c = self.config
        return ClassifierHead(c.dim, c.num_classes, c.pool, c.head_norm, c.head_norm_eps, c.head_proj)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input windows -> features ``[b, m, d]``."""
        return self.forward_tokens(self.embed(x))

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens entering the first block ``[b, m, d]`` -> features ``[b, m, d]``: the final
        norm of the last block's output, or the weighted layer sum."""
        depth = len(self.blocks)
        every = range(depth) if self.layer_weights is not None else ()
        last, outputs = self._run_blocks(tokens, depth, every)
        return self._features(tokens, last, outputs)

    def _features(self, tokens: torch.Tensor, last: torch.Tensor, outputs: dict[int, torch.Tensor]) -> torch.Tensor:
        """The features from the embedding output ``tokens``, the last block's output ``last``
        and (for the weighted layer sum, which needs every one) the blocks' ``outputs``."""
        if self.layer_weights is None:
            return self.norm(last)
        states = [tokens, *(outputs[i] for i in range(len(self.blocks) - 1))]
        states.append(self.norm(last) if self.normed_last_state else last)
        weights = self.layer_weights.softmax(dim=0)  # [layers]
        return torch.einsum("l,lbmd->bmd", weights, torch.stack(states))

    def _run_blocks(self, x: torch.Tensor, stop: int, keep: Sequence[int]) -> tuple[torch.Tensor, dict]:
        """Blocks ``0 .. stop - 1`` on ``x [b, m, d]``: the last output and ``{i: output}`` for
        ``i`` in ``keep``. With activation checkpointing each block but the last one run keeps
        only its input and runs again in the backward."""
        args = self.attn_args(x)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        kept = {}
        for i, block in enumerate(self.blocks[:stop]):
            # The last block's activations are used as soon as the backward starts: recomputing them saves nothing.
            if recompute and i < stop - 1 and _needs_backward(block, x, args):
                x = checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
            if i in keep:
                kept[i] = x
        return x, kept

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              stop_early: bool = False, intermediates_only: bool = False):
        """timm's API: the outputs ``[b, m, d]`` of the blocks at ``indices`` (0-based; negative
        from the end; an int n: the last n blocks; None: all), as the blocks give them (no final
        norm). ``intermediates_only``: that list alone, and ``stop_early`` ends the forward after
        the last wanted block; else ``(features, list)``, the features from a full forward."""
        depth = len(self.blocks)
        wanted = block_indices(indices, depth)
        tokens = self.embed(x)
        if intermediates_only:
            _, outputs = self._run_blocks(tokens, max(wanted, default=-1) + 1 if stop_early else depth, wanted)
            return [outputs[i] for i in wanted]
        keep = range(depth) if self.layer_weights is not None else wanted
        last, outputs = self._run_blocks(tokens, depth, keep)
        return self._features(tokens, last, outputs), [outputs[i] for i in wanted]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``[b, classes]``; ``pre_logits``: the pooled vector ``[b, d]`` before the head's
        norm, projector and Linear."""
        return self.head(tokens, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, pool: str = "mean", norm: bool = False) -> None:
        """A new head for a downstream task (the PETL recipe: Linear on the mean of all tokens)."""
        self.config = self.config.replace(num_classes=num_classes, pool=pool, head_norm=norm, head_proj=None)
        device = next(self.parameters()).device
        self.head = self.classifier_head().to(device)
        trunc_normal_(self.head.fc.weight, std=0.02)
        nn.init.zeros_(self.head.fc.bias)

    def flops(self) -> int:
        """Analytic forward FLOPs for one window, 2 per multiply-add of the matmuls and
        convolutions (norms, softmax and activations left out)."""
        return 2 * (self.embed_macs() + self.blocks_macs() + self.head.macs())


def block_indices(indices: int | Sequence[int] | None, depth: int) -> list[int]:
    """timm's rule: None -> every block; an int n -> the last n blocks; a list -> those blocks
    (negative from the end). Out of range is a ValueError."""
    if indices is None:
        return list(range(depth))
    if isinstance(indices, int):
        chosen = list(range(depth - indices, depth))
    else:
        chosen = [i + depth if i < 0 else i for i in indices]
    if any(not 0 <= i < depth for i in chosen):
        raise ValueError(f"block indices {indices} out of range for {depth} blocks")
    return chosen


def _needs_backward(block: nn.Module, x: torch.Tensor, args: tuple) -> bool:
    """Whether the backward passes through ``block``: its inputs or one of its weights need a gradient."""
    return (x.requires_grad or any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
            or any(param.requires_grad for param in block.parameters()))


def set_activation_checkpointing(model: nn.Module, on: bool) -> None:
    """Make every backbone inside ``model`` recompute its blocks' activations in the backward pass.

    Each entry of ``blocks`` (with whatever PETL modules were injected into it or wrapped
    around it) then keeps only its input ``[b, tokens, d]`` in the forward and runs again
    during the backward (``torch.utils.checkpoint``, non-reentrant, RNG state preserved, so
    dropout draws the same masks). The last block is the exception: the backward needs its
    activations first, so they are kept (the peak is the same, one recompute less). Only
    while training with grad enabled: an eval or no_grad forward is unchanged. Costs up to one
    more forward of the blocks per training step.
    """
    for module in model.modules():
        if isinstance(module, Backbone):
            module.activation_checkpointing = on
