"""The PETL methods: a validated config per method, how it is injected, what it trains.

Each method registers one record, ``register_method(name, config, inject, module=...)``, as
PEFT's one ``register_peft_method`` line per method: its config class, where its modules go
(an injection) and, for injections that place modules, how to build one. Two kinds of
injection:

- ``adapter_sites`` places a module at each block's sub-layers named by the config's
  ``locations()`` (Pfeiffer: one, Houlsby: MHSA and FFN), wrapped as the config's ``site``
  says (parallel; the single adapter may also sit in sequence). The record's ``module(config,
  dim)`` builds each one: a bottleneck or Convpass adapter, Dense-MoA, Soft-MoA, or a
  plugin's own module, which then gets every placement for free.
- ``lora_attention``, ``train_all``, ``head_only`` take ``(model, config)`` only.

Outside packages add methods through the ``softmoa.methods`` entry-point group (a callable
receiving the registry, which calls ``register_method(..., builtin=False)``). ``apply_method``
injects the method's modules into a backbone (any family: ``models/backbone.py``) and sets
``requires_grad`` structurally (by module type, never by parameter name).

Trainable in every adapter method (docs/method.md section 3): the adapters or mixtures, the
LayerNorms that feed them, the final LayerNorm and the head. LoRA: its low-rank pairs, the
final LayerNorm and the head. Linear probe: the head. Full: everything (but a waveform
backbone's convolution stack, frozen always). With every method, a backbone's weighted layer
sum trains with the head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..registry import Registry
from .widths import RATE_HELP, Init, bottleneck_width, default_reduction_rate

if TYPE_CHECKING:
    from torch import nn

    from ..models.backbone import Backbone
    from .layers import PETLModule

# This module imports no torch until a model is built: configs (and so every flag and preset)
# validate in milliseconds. The torch modules are imported inside the functions that use them.

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

    def site(self, sublayer: nn.Module, module: PETLModule) -> nn.Module:
        """The wrapper that places ``module`` at ``sublayer``: beside it (parallel).

        A config that offers other placements overrides this (``AdapterConfig``: sequential).
        """
        from .sites import ParallelSite

        return ParallelSite(sublayer, module)


class AdapterConfig(AdapterSites):
    """A single adapter per location."""

    paper_reduction_rate: ClassVar[float] = 64
    name: Literal["adapter"] = "adapter"
    kind: Literal["bottleneck", "convpass"] = Field("bottleneck", description="the adapter: a bottleneck MLP or "
                                                                              "Convpass (a 3x3 convolution inside)")
    reduction_rate: float | None = Field(None, gt=0, description=RATE_HELP)
    placement: Literal["parallel", "sequential"] = Field("parallel", description="beside the sub-layer, or after "
                                                                                 "it on its output")
    residual: bool = Field(True, description="sequential only: s + A(s), or A(s) alone when off")

    def site(self, sublayer: nn.Module, module: PETLModule) -> nn.Module:
        from .sites import ParallelSite, SequentialSite

        if self.placement == "sequential":
            return SequentialSite(sublayer, module, self.residual)
        return ParallelSite(sublayer, module)


class DenseConfig(AdapterSites):
    """Dense-MoA: every expert on every token, weighted by a softmax router."""

    paper_reduction_rate: ClassVar[float] = 128
    name: Literal["dense"] = "dense"
    experts: int = Field(7, ge=1, description="adapters (experts) per location")
    reduction_rate: float | None = Field(None, gt=0, description=RATE_HELP)


class SoftConfig(AdapterSites):
    """Soft-MoA: experts see slots, soft combinations of the tokens."""

    paper_reduction_rate: ClassVar[float] = 128
    name: Literal["soft"] = "soft"
    experts: int = Field(7, ge=1, description="adapters (experts) per location")
    slots: int = Field(1, ge=1, description="slots per expert: soft combinations of the tokens each expert sees")
    reduction_rate: float | None = Field(None, gt=0, description=RATE_HELP)
    normalize: bool = Field(False, description="L2-normalise tokens and slot parameters (Soft-MoE 2.3)")


class LoRAConfig(MethodConfig):
    """LoRA on the attention projections."""

    name: Literal["lora"] = "lora"
    rank: int = Field(8, ge=1, description="rank of each low-rank pair")
    alpha: float = Field(8.0, gt=0, description="scale: the pair's update is multiplied by alpha / rank")
    targets: tuple[Literal["q", "k", "v", "proj"], ...] = Field(("q", "v"), description="attention projections "
                                                                                       "that get a pair (q, v)")


ModuleBuilder = Callable[[MethodConfig, int], "PETLModule"]
"""``(config, dim) -> module``: one PETL module for tokens of width ``dim``."""
Injection = Callable[..., None]
"""``(model, config)``, or ``(model, config, module)`` for an injection that places modules."""


@dataclass(frozen=True)
class Method:
    """One registered method: its config class, where its modules go, how to build one.

    ``inject`` receives ``(model, config)`` and, when ``module`` is given,
    ``(model, config, module)``. It injects into a frozen model and unfreezes its own parts;
    ``apply_method`` trains the head.
    """

    config: type[MethodConfig]
    inject: Injection
    module: ModuleBuilder | None = None

    def apply(self, model: Backbone, config: MethodConfig) -> None:
        if self.module is None:
            self.inject(model, config)
        else:
            self.inject(model, config, self.module)


METHODS: Registry[Method] = Registry("method", "softmoa.methods")


# ---------------------------------------------------------------- injections

def adapter_sites(model: Backbone, config: AdapterSites, module: ModuleBuilder) -> None:
    """At each block's ``config.locations()``: wrap the sub-layer around a new ``module(config,
    dim)`` as ``config.site`` says; train these modules, the LayerNorms that feed them and the
    final LayerNorm."""
    from .sites import SUBLAYER

    dim = model.config.dim
    for block in model.blocks:
        for location in config.locations():
            sublayer, norm = SUBLAYER[location]
            setattr(block, sublayer, config.site(getattr(block, sublayer), module(config, dim)))
            getattr(block, norm).requires_grad_(True)
    _train_petl_modules(model)


def lora_attention(model: Backbone, config: LoRAConfig) -> None:
    """A LoRA pair beside each targeted attention projection; train the pairs and the final LayerNorm."""
    from .lora import LoRALinear

    for block in model.blocks:
        for target in config.targets:
            setattr(block.attn, target, LoRALinear(getattr(block.attn, target), config.rank, config.alpha))
    _train_petl_modules(model)


def train_all(model: Backbone, config: MethodConfig) -> None:
    """Full fine-tuning: every parameter trains."""
    model.requires_grad_(True)


def head_only(model: Backbone, config: MethodConfig) -> None:
    """Linear probe: nothing beyond the head (which ``apply_method`` always trains)."""


def _train_petl_modules(model: Backbone) -> None:
    from .layers import PETLModule

    for module in model.modules():
        if isinstance(module, PETLModule):
            module.requires_grad_(True)
    model.norm.requires_grad_(True)


# ---------------------------------------------------------------- bottleneck widths

def reduction_rate(config: MethodConfig, dim: int) -> float:
    """The config's reduction rate, or its default for width ``dim`` when unset."""
    given = getattr(config, "reduction_rate", None)
    return given if given is not None else default_reduction_rate(dim, getattr(config, "paper_reduction_rate", 128))


def bottleneck_units(config: MethodConfig, dim: int) -> int:
    """Hidden units of each adapter or expert of ``config`` on width ``dim`` (``bottleneck_width``)."""
    return bottleneck_width(dim, reduction_rate(config, dim))


def with_backbone_defaults(config: MethodConfig, dim: int) -> tuple[MethodConfig, str | None]:
    """``config`` with an unset reduction rate derived from the backbone's width ``dim``
    (``default_reduction_rate``), and one line saying what was chosen and why (None when
    nothing was unset), so that a run records and says the width it trains."""
    if "reduction_rate" not in type(config).model_fields or config.reduction_rate is not None:
        return config, None
    paper, rate = config.paper_reduction_rate, reduction_rate(config, dim)
    units = bottleneck_units(config, dim)
    why = (f"the paper's rate on a backbone of width {dim}" if rate == paper else
           f"the paper's {paper:g} would leave {bottleneck_width(dim, paper)} on a backbone of width {dim}")
    return (config.model_copy(update={"reduction_rate": rate}),
            f"method.reduction_rate {rate:g} ({units} hidden units per {'expert' if hasattr(config, 'experts') else 'adapter'}): "
            f"{why}; set method.reduction_rate to choose another")


# ---------------------------------------------------------------- modules of the adapter methods

def single_adapter(config: AdapterConfig, dim: int) -> PETLModule:
    from .layers import BottleneckAdapter, ConvpassAdapter

    layer = {"bottleneck": BottleneckAdapter, "convpass": ConvpassAdapter}[config.kind]
    return layer(dim, bottleneck_units(config, dim), config.init)


def dense_moa(config: DenseConfig, dim: int) -> PETLModule:
    from .mixtures import DenseMoA

    return DenseMoA(dim, config.experts, bottleneck_units(config, dim), config.init)


def soft_moa(config: SoftConfig, dim: int) -> PETLModule:
    from .mixtures import SoftMoA

    return SoftMoA(dim, config.experts, config.slots, bottleneck_units(config, dim), config.normalize, config.init)


# ---------------------------------------------------------------- registration

def register_method(name: str, config: type[MethodConfig], inject: Injection, module: ModuleBuilder | None = None,
                    *, builtin: bool = True) -> Method:
    """Register method ``name``: its config class, its injection and (for ``adapter_sites``)
    how to build its module. Plugins pass ``builtin=False`` (a taken name is then ignored with
    a warning). Mistakes raise ``ValueError`` here rather than at training time."""
    tag = config.model_fields.get("name")
    if tag is None or tag.default != name:
        raise ValueError(f"method {name!r}: {config.__name__} needs a field name: Literal[{name!r}] = {name!r}")
    if inject is adapter_sites and (module is None or not issubclass(config, AdapterSites)):
        raise ValueError(f"method {name!r}: adapter_sites needs a module builder and a config "
                         f"subclassing AdapterSites")
    return METHODS.register(name, Method(config, inject, module), builtin=builtin)


register_method("linear", LinearConfig, head_only)
register_method("full", FullConfig, train_all)
register_method("adapter", AdapterConfig, adapter_sites, module=single_adapter)
register_method("dense", DenseConfig, adapter_sites, module=dense_moa)
register_method("soft", SoftConfig, adapter_sites, module=soft_moa)
register_method("lora", LoRAConfig, lora_attention)


def method_config(name: str, **options) -> MethodConfig:
    """Validated config for method ``name``; unknown or invalid options raise pydantic's error."""
    return METHODS.get(name).config(**options)


def apply_method(model: Backbone, config: MethodConfig) -> Backbone:
    """Inject ``config``'s modules into ``model`` in place and set what trains.

    Everything is frozen first; then the method unfreezes its own parts. The head always
    trains, and so do the weights of a weighted layer sum (SUPERB's recipe). Returns the model.
    """
    model.requires_grad_(False)
    METHODS.get(config.name).apply(model, config)
    model.head.requires_grad_(True)
    if model.layer_weights is not None:
        model.layer_weights.requires_grad_(True)
    return model


def petl_modules(model: nn.Module) -> list[tuple[str, PETLModule]]:
    """The PETL modules of a model, by qualified name."""
    from .layers import PETLModule

    return [(name, module) for name, module in model.named_modules() if isinstance(module, PETLModule)]
