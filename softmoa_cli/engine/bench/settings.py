"""What a benchmark runs on: backbone dims, input shape, repetitions, threads and device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SoftmoaError

if TYPE_CHECKING:
    from ..models.ast import ASTConfig


@dataclass(frozen=True)
class BenchSettings:
    """Backbone dims, input ``[batch, frames, 128]`` and repetitions. ``threads``: torch intra-op
    threads (None: leave as is). ``activation_checkpointing``: also measure every method with it.

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

    def ast_config(self) -> ASTConfig:
        """The engine AST at these dims, ``max_length = frames``, with a ``num_classes`` head."""
        from ..models.ast import ASTConfig

        return ASTConfig(dim=self.dim, depth=self.depth, heads=self.heads, mlp_dim=self.mlp_dim,
                         max_length=self.frames, num_classes=self.num_classes)
