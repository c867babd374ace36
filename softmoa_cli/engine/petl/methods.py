"""The PETL methods: a validated config per method, how it is injected, what it trains.

Each method registers ``(config class, apply function)`` under its name in ``METHODS``;
outside packages add methods through the ``softmoa.methods`` entry-point group (a callable
receiving the registry). ``apply_method`` injects the method's modules into an AST and sets
``requires_grad`` structurally (by module type, never by parameter name).

Trainable in every adapter method (method.md section 3): the adapters or mixtures, the
LayerNorms that feed them, the final LayerNorm and the head. LoRA: its low-rank pairs, the
final LayerNorm and the head. Linear probe: the head. Full: everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..models.ast import AST
from ..registry import Registry
from .layers import BottleneckAdapter, ConvpassAdapter, Init, PETLModule, bottleneck_width
from .lora import LoRALinear
from .mixtures import DenseMoA, SoftMoA
from .sites import SUBLAYER, ParallelSite, SequentialSite


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinearConfig(MethodConfig):
    """Linear probe: train only a new classification head."""

    name: Literal["linear"] = "linear"


class FullConfig(MethodConfig):
    """Full fine-tuning: train every parameter."""

    name: Literal["full"] = "full"


class AdapterSites(MethodConfig):
    """Where adapters go: Pfeiffer (one location) or Houlsby (MHSA and FFN, separate modules)."""

    location: Literal["mhsa", "ffn"] = Field("mhsa", description="sub-layer beside which a Pfeiffer adapter sits")
    adapter_config: Literal["pfeiffer", "houlsby"] = Field("pfeiffer", description="one location or both")
    init: Init = Field("zero_up", description="zero_up: up-projection zero (starts at the backbone); "
                                              "research: both projections N(0, 0.02) as the research code")

    def locations(self) -> tuple[str, ...]:
        return ("mhsa", "ffn") if self.adapter_config == "houlsby" else (self.location,)


class AdapterConfig(AdapterSites):
    """A single adapter per location."""

    name: Literal["adapter"] = "adapter"
    kind: Literal["bottleneck", "convpass"] = "bottleneck"
    reduction_rate: float = Field(64, gt=0, description="bottleneck r = round(d / reduction_rate)")
    placement: Literal["parallel", "sequential"] = "parallel"
    residual: bool = Field(True, description="sequential only: s + A(s) (True) or A(s) (False)")


class DenseConfig(AdapterSites):
    """Dense-MoA: every expert on every token, weighted by a softmax router."""

    name: Literal["dense"] = "dense"
    experts: int = Field(7, ge=1)
    reduction_rate: float = Field(128, gt=0)


class SoftConfig(AdapterSites):
    """Soft-MoA: experts see slots, soft combinations of the tokens."""

    name: Literal["soft"] = "soft"
    experts: int = Field(7, ge=1)
    slots: int = Field(1, ge=1)
    reduction_rate: float = Field(128, gt=0)
    normalize: bool = Field(False, description="L2-normalise tokens and slot parameters (Soft-MoE 2.3)")


class LoRAConfig(MethodConfig):
    """LoRA on the attention projections."""

    name: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1)
    alpha: float = Field(8.0, gt=0)
    targets: tuple[Literal["q", "k", "v", "proj"], ...] = ("q", "v")


@dataclass(frozen=True)
class Method:
    config: type[MethodConfig]
    apply: Callable[[AST, MethodConfig], None]


METHODS: Registry[Method] = Registry("method", "softmoa.methods")


def _adapter_factory(config: MethodConfig, dim: int) -> Callable[[], PETLModule]:
    r = bottleneck_width(dim, config.reduction_rate)
    if isinstance(config, SoftConfig):
        return lambda: SoftMoA(dim, config.experts, config.slots, r, config.normalize, config.init)
    if isinstance(config, DenseConfig):
        return lambda: DenseMoA(dim, config.experts, r, config.init)
    layer = ConvpassAdapter if config.kind == "convpass" else BottleneckAdapter
    return lambda: layer(dim, r, config.init)


def _inject_adapters(model: AST, config: AdapterSites) -> None:
    """Wrap each block's adapted sub-layers and train the adapters and their LayerNorms."""
    make = _adapter_factory(config, model.config.dim)
    sequential = getattr(config, "placement", "parallel") == "sequential"
    for block in model.blocks:
        for location in config.locations():
            sublayer, norm = SUBLAYER[location]
            base = getattr(block, sublayer)
            site = SequentialSite(base, make(), config.residual) if sequential else ParallelSite(base, make())
            setattr(block, sublayer, site)
            getattr(block, norm).requires_grad_(True)
    _train_petl_modules(model)


def _train_petl_modules(model: AST) -> None:
    for module in model.modules():
        if isinstance(module, PETLModule):
            module.requires_grad_(True)
    model.norm.requires_grad_(True)


def _inject_lora(model: AST, config: LoRAConfig) -> None:
    for block in model.blocks:
        for target in config.targets:
            setattr(block.attn, target, LoRALinear(getattr(block.attn, target), config.rank, config.alpha))
    _train_petl_modules(model)


def _train_all(model: AST, config: FullConfig) -> None:
    model.requires_grad_(True)


for _name, _config, _apply in (("linear", LinearConfig, lambda model, config: None), ("full", FullConfig, _train_all),
                               ("adapter", AdapterConfig, _inject_adapters), ("dense", DenseConfig, _inject_adapters),
                               ("soft", SoftConfig, _inject_adapters), ("lora", LoRAConfig, _inject_lora)):
    METHODS.register(_name, Method(_config, _apply))


def method_config(name: str, **options) -> MethodConfig:
    """Validated config for method ``name``; unknown or invalid options raise pydantic's error."""
    return METHODS.get(name).config(**options)


def apply_method(model: AST, config: MethodConfig) -> AST:
    """Inject ``config``'s modules into ``model`` in place and set what trains.

    Everything is frozen first; then the method unfreezes its own parts. The head always
    trains. Returns the model.
    """
    model.requires_grad_(False)
    METHODS.get(config.name).apply(model, config)
    model.head.requires_grad_(True)
    return model


def petl_modules(model: nn.Module) -> list[tuple[str, PETLModule]]:
    """The PETL modules of a model, by qualified name."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, PETLModule)]
