"""What a benchmark runs on: the backbone family and its dims, input shape, repetitions, threads
and device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SoftmoaError

if TYPE_CHECKING:
    from ..models.backbone import BackboneConfig

BASE = dict(dim=768, depth=12, heads=12, mlp_dim=3072)  # AST-base (the AudioSet AST), wav2vec2-base, HuBERT, WavLM
BASE_SIZES = {"ast": BASE, "whisper": dict(dim=512, depth=6, heads=8, mlp_dim=2048),  # Whisper base's encoder
              "wav2vec2": BASE, "hubert": BASE, "wavlm": BASE}
"""Each family's base size, the bench's default dims for it."""


@dataclass(frozen=True)
class BenchSettings:
    """Backbone family and dims, input windows of ``frames`` frames of 10 ms (``[batch, frames,
    mel bins]`` log-mels, or ``[batch, frames * 160]`` samples of a waveform family) and
    repetitions. ``threads``: torch intra-op threads (None: leave as is).
    ``activation_checkpointing``: also measure every method with it.

    Errors name the settings in backticks as ``softmoa bench`` names its parameters
    (``num_classes`` is its ``classes``), so that the command says them as its flags.
    """

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    frames: int = 400
    batch: int = 4
    warmup: int = 1
    repeats: int = 5
    threads: int | None = None
    num_classes: int = 10
    device: str = "cpu"
    seed: int = 0
    activation_checkpointing: bool = False
    backbone: str = "ast"

    @classmethod
    def sized(cls, backbone: str = "ast", **settings) -> BenchSettings:
        """Settings on ``backbone``'s base size (``BASE_SIZES``); dims given in ``settings``
        replace it (None: not given)."""
        given = {key: value for key, value in settings.items() if value is not None}
        return cls(backbone=backbone, **BASE_SIZES.get(backbone, BASE) | given)

    def check(self) -> None:
        """Raise SoftmoaError for settings that cannot run."""
        positive = {"dim": self.dim, "depth": self.depth, "heads": self.heads, "mlp_dim": self.mlp_dim,
                    "batch": self.batch, "repeats": self.repeats, "classes": self.num_classes}
        for name, value in positive.items():
            if value < 1:
                raise SoftmoaError(f"`{name}` must be at least 1, not {value}")
        if self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise SoftmoaError("`warmup` must be at least 0 and `threads` at least 1")
        if self.dim % self.heads:
            raise SoftmoaError(f"`dim` {self.dim} is not divisible by `heads` {self.heads}")
        if self.frames < 16:
            raise SoftmoaError(f"`frames` must be at least 16 (one patch), not {self.frames}")
        if self.backbone not in BASE_SIZES:
            raise SoftmoaError(f"`backbone` {self.backbone}: choose one of {', '.join(BASE_SIZES)}")

    def backbone_config(self) -> BackboneConfig:
        """The engine backbone of this family at these dims (the family's defaults otherwise:
        Whisper's 80 mel bins, wav2vec2's convolution stack), ``max_length = frames``, with a
        ``num_classes`` head."""
        from ..models.families import FAMILIES

        return FAMILIES.get(self.backbone).config(dim=self.dim, depth=self.depth, heads=self.heads,
                                                  mlp_dim=self.mlp_dim, max_length=self.frames,
                                                  num_classes=self.num_classes)

    def input_shape(self) -> tuple[int, ...]:
        """One window without the batch axis, as the backbone takes it."""
        from ..data.features import FeatureConfig
        from ..models.families import FAMILIES

        config = self.backbone_config()
        return FeatureConfig(kind=FAMILIES.get(self.backbone).model.front_end, max_length=self.frames,
                             num_mel_bins=getattr(config, "num_mel_bins", 128)).window_shape

    @property
    def title(self) -> str:
        """``ast d=768, depth 12``: the backbone in a few words."""
        return f"{self.backbone} d={self.dim}, depth {self.depth}"
