"""wav2vec 2.0 (Baevski et al. 2020), HuBERT (Hsu et al. 2021) and WavLM (Chen et al. 2022): one
family of waveform encoders as backbones.

Input: 16 kHz samples ``[batch, samples]`` (``data/frontends.waveform_window``; a window of
``max_length`` frames of 10 ms holds ``max_length * 160`` samples). A stack of 1-D convolutions
(320x down-sampling in the released models: one token per 20 ms) makes frame features; it is
frozen always, even for full fine-tuning, as the wav2vec2 fine-tuning recipe does (no PETL
method or optimiser ever trains it). A LayerNorm (optional in HuBERT) and a Linear project them
to the model width; a wide grouped convolution over time adds relative position information.
Base models are post-LN (a LayerNorm before the blocks, none after); large models
(``pre_norm``, transformers' ``do_stable_layer_norm``) are pre-LN with a LayerNorm after the
blocks. WavLM adds a gated relative position bias to every block's attention
(``relative_position.py``). Dropout, LayerDrop and the pre-training masks are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import SAMPLES_PER_FRAME, Backbone, BackboneConfig
from .layers import Attention, Block
from .relative_position import GatedBiasAttention, RelativePositionBias

BASE_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2  # (channels, kernel, stride) per layer


@dataclass(frozen=True)
class Wav2Vec2Config(BackboneConfig):
    """The encoder's shape; defaults are wav2vec2-base's.

    ``conv_layers``: (channels, kernel, stride) of each convolution; ``conv_norm``: ``group``
    (a per-channel GroupNorm after the first convolution only) or ``layer`` (a LayerNorm over
    channels after every one); ``feature_norm``: the LayerNorm before the feature projection;
    ``pos_kernel``, ``pos_groups``: the positional convolution; ``pre_norm``: see the module.
    """

    conv_layers: tuple[tuple[int, int, int], ...] = BASE_CONV
    conv_norm: str = "group"
    conv_bias: bool = False
    feature_norm: bool = True
    pos_kernel: int = 128
    pos_groups: int = 16
    pre_norm: bool = False

    def __post_init__(self):  # JSON gives lists; keep the config hashable
        object.__setattr__(self, "conv_layers", tuple(tuple(layer) for layer in self.conv_layers))


@dataclass(frozen=True)
class HubertConfig(Wav2Vec2Config):
    """HuBERT: wav2vec2's shape (``feature_norm`` is transformers' ``feat_proj_layer_norm``)."""


@dataclass(frozen=True)
class WavLMConfig(Wav2Vec2Config):
    """WavLM: wav2vec2's shape plus the relative position buckets."""

    num_buckets: int = 320
    max_distance: int = 800


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of ``[b, c, t]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvLayer(nn.Module):
    """Convolution, norm (GroupNorm per channel, LayerNorm over channels, or none), GELU:
    ``[b, c_in, t] -> [b, c_out, t']``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: str | None):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        if norm == "group":
            self.norm = nn.GroupNorm(c_out, c_out)
        else:
            self.norm = ChannelLayerNorm(c_out) if norm == "layer" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x)))


def conv_norms(config: Wav2Vec2Config) -> list[str | None]:
    """The norm after each convolution: ``group`` on the first only, or ``layer`` on every one."""
    if config.conv_norm == "group":
        return ["group"] + [None] * (len(config.conv_layers) - 1)
    return ["layer"] * len(config.conv_layers)


class PositionalConv(nn.Module):
    """Relative position information ``[b, m, d] -> [b, m, d]``: GELU of a grouped convolution
    over time ('same' output length: an even kernel's extra last frame is dropped). Its weight is
    a plain tensor: the checkpoints' weight norm is folded into it at load time."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))[..., :x.shape[1]]  # [b, d, m]
        return F.gelu(y).transpose(1, 2)


def conv_frames(samples: int, conv_layers) -> int:
    """Frames out of the convolution stack for ``samples`` samples."""
    for _, kernel, stride in conv_layers:
        samples = (samples - kernel) // stride + 1
    return samples


class Wav2Vec2(Backbone):
    """A waveform encoder: ``[b, samples]`` -> ``[b, classes]``."""

    family = "wav2vec2"
    front_end = "waveform"
    normed_last_state = False  # transformers' hidden_states end with the last block's own output

    def __init__(self, config: Wav2Vec2Config = Wav2Vec2Config()):
        super().__init__(config)
        d, widths = config.dim, [1] + [c for c, _, _ in config.conv_layers]
        self.features = nn.Sequential(*(ConvLayer(c_in, c_out, k, s, config.conv_bias, norm)
                                        for c_in, (c_out, k, s), norm in zip(widths, config.conv_layers,
                                                                               conv_norms(config))))
        self.features.requires_grad_(False)
        self.feature_norm = nn.LayerNorm(widths[-1], eps=config.eps) if config.feature_norm else nn.Identity()
        self.feature_proj = nn.Linear(widths[-1], d)
        self.pos_conv = PositionalConv(d, config.pos_kernel, config.pos_groups)
        self.norm_pre = nn.Identity() if config.pre_norm else nn.LayerNorm(d, eps=config.eps)
        self.blocks = nn.ModuleList(Block(d, config.mlp_dim, self.attention(), config.eps, config.pre_norm)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=config.eps) if config.pre_norm else nn.Identity()
        self.head = self.classifier_head()

    def attention(self) -> nn.Module:
        return Attention(self.config.dim, self.config.heads)

    def requires_grad_(self, requires_grad: bool = True) -> Wav2Vec2:
        """As ``nn.Module.requires_grad_``, except that the convolution stack stays frozen."""
        super().requires_grad_(requires_grad)
        self.features.requires_grad_(False)
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Samples ``[b, samples]`` -> tokens ``[b, m, d]`` with position information."""
        with torch.no_grad():  # frozen always: no graph through the convolution stack
            frames = self.features(x.unsqueeze(1)).transpose(1, 2)  # [b, m, channels]
        tokens = self.feature_proj(self.feature_norm(frames))  # [b, m, d]
        return self.norm_pre(tokens + self.pos_conv(tokens))

    def input_shape(self, max_length: int) -> tuple[int, ...]:
        return (max_length * SAMPLES_PER_FRAME,)

    def num_tokens(self) -> int:
        return conv_frames(self.config.max_length * SAMPLES_PER_FRAME, self.config.conv_layers)

    def embed_macs(self) -> int:
        c, m = self.config, self.num_tokens()
        samples, channels, convs = c.max_length * SAMPLES_PER_FRAME, 1, 0
        for width, kernel, stride in c.conv_layers:
            samples = (samples - kernel) // stride + 1
            convs += samples * channels * width * kernel
            channels = width
        positions = m + 2 * (c.pos_kernel // 2) - c.pos_kernel + 1  # an even kernel gives one frame more
        return convs + m * channels * c.dim + positions * c.dim * (c.dim // c.pos_groups) * c.pos_kernel

    def set_max_length(self, max_length: int) -> None:
        """Windows of ``max_length`` frames: the positions are convolutional, nothing to adapt."""
        self.config = self.config.replace(max_length=max_length)


class HuBERT(Wav2Vec2):
    family = "hubert"


class WavLM(Wav2Vec2):
    """wav2vec2 with WavLM's gated relative position bias in every block's attention."""

    family = "wavlm"

    def __init__(self, config: WavLMConfig = WavLMConfig()):
        super().__init__(config)
        self.rel_pos = RelativePositionBias(config.heads, config.num_buckets, config.max_distance)

    def attention(self) -> nn.Module:
        return GatedBiasAttention(self.config.dim, self.config.heads)

    def attn_args(self, tokens: torch.Tensor) -> tuple:
        """The ungated bias ``[1, h, m, m]``, computed once per forward for every block."""
        return (self.rel_pos(tokens.shape[1]),)

    def blocks_macs(self) -> int:
        """The blocks', with each attention's gate (a Linear ``d / h -> 8`` per head and token)."""
        c = self.config
        return super().blocks_macs() + c.depth * self.num_tokens() * c.dim * 8
