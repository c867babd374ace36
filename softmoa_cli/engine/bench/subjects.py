"""What a row times: an engine model with a PETL method (a training step and an eval forward),
or an outside model (forward only), both on the shared batch ``x [b, *window]`` (the backbone's
input), ``y [b]`` class indices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .results import CHECKPOINTED

if TYPE_CHECKING:
    import torch

    from ..petl.methods import MethodConfig
    from .settings import BenchSettings


@dataclass
class Subject:
    """``step`` (None: forward only) and ``forward`` of ``model``, and their timed samples in ms."""

    label: str
    model: torch.nn.Module
    forward: Callable[[], object]
    step: Callable[[], object] | None = None
    optimizer: torch.optim.Optimizer | None = None
    config: MethodConfig | None = None
    checkpointed: bool = False
    step_samples: list[float] = field(default_factory=list)
    forward_samples: list[float] = field(default_factory=list)


def engine_subject(label: str, config: MethodConfig, settings: BenchSettings, x: torch.Tensor,
                   y: torch.Tensor, checkpointed: bool = False) -> Subject:
    """The engine backbone at ``settings`` with method ``config``, with activation checkpointing
    when ``checkpointed`` (its label then ends in ``CHECKPOINTED``)."""
    from ..models.backbone import set_activation_checkpointing
    from ..petl.build import build_model

    model = build_model(settings.backbone_config(), config, settings.num_classes).to(settings.device)
    set_activation_checkpointing(model, checkpointed)
    subject = training_subject(label + CHECKPOINTED if checkpointed else label, model, x, y, config)
    subject.checkpointed = checkpointed
    return subject


def training_subject(label: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     config: MethodConfig | None = None) -> Subject:
    """A training step (cross-entropy, AdamW on the trainable parameters) and an eval forward of
    ``model`` on ``x, y``."""
    import torch
    import torch.nn.functional as F

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return Subject(label, model, forward, step, optimizer, config)


def forward_subject(label: str, model: torch.nn.Module, x: torch.Tensor) -> Subject:
    """An outside model taking the same features ``x``, timed forward only."""
    import torch

    model = model.eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    return Subject(label, model, forward)
