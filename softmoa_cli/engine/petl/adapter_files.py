"""An adapter on disk: only the trained tensors (``adapter.safetensors``) plus a JSON that says
how to rebuild the model around them (``adapter.json``: backbone reference, method config,
labels, features, task, a multi-label adapter's decision thresholds, tool version), as PEFT
stores adapters.

A full fine-tune's "adapter" is the whole model. Loading needs the backbone: the caller
resolves ``AdapterInfo.backbone`` (see ``runs/run.py``) and hands it in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ... import __version__
from ..data.features import FeatureConfig
from ..errors import CheckpointError
from ..fsutil import atomic_save_tensors, atomic_write_json
from ..models.backbone import Backbone
from ..models.pretrained import Pretrained
from ..task import Task, task_named
from .build import build_model
from .methods import method_config

from ..runs.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy (never a live view) of every trainable parameter, by name."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def load_tensors_(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into the model's trainable parameters; they must match one to one."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    shapes = [name for name in set(params) & set(tensors) if params[name].shape != tensors[name].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{source}: tensors do not fit the model (missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}, mis-shaped {shapes[:4]})")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name])


@dataclass(frozen=True)
class AdapterInfo:
    """What ``adapter.json`` says of a fold's adapter: its ``backbone`` reference (a hub id,
    ``embedded``, an absolute path, or a path relative to the fold's folder), its ``method``
    config (as JSON), ``labels``, ``features``, ``task`` and, for a task that has them, the
    ``thresholds`` tuned on its validation clips."""

    backbone: str
    method: dict
    labels: list[str]
    features: FeatureConfig
    task: Task
    thresholds: list[float] | None = None

    @classmethod
    def read(cls, directory: str | Path) -> AdapterInfo:
        """The adapter.json of a fold's folder (a CheckpointError when it is missing or not one)."""
        path = Path(directory) / ADAPTER_CONFIG
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path}: unreadable adapter config ({error})") from None
        if meta.get("format") != "softmoa-adapter":
            raise CheckpointError(f"{path}: not a softmoa adapter checkpoint")
        return cls(meta["backbone"], meta["method"], meta["labels"], FeatureConfig(**meta["features"]),
                   task_named(meta.get("task")), meta.get("thresholds"))

    def to_dict(self) -> dict:
        return {"format": "softmoa-adapter", "version": __version__, "backbone": self.backbone, "method": self.method,
                "labels": list(self.labels), "features": asdict(self.features), "task": self.task.name,
                **({"thresholds": list(self.thresholds)} if self.thresholds is not None else {})}


def save_adapter(directory: Path, tensors: dict[str, torch.Tensor], info: AdapterInfo) -> int:
    """Write ``adapter.safetensors`` (only ``tensors``) and ``adapter.json`` (``info``, with the
    count of tensors and parameters); return the weights' size in bytes."""
    atomic_save_tensors(directory / ADAPTER_WEIGHTS, tensors)
    atomic_write_json(directory / ADAPTER_CONFIG, info.to_dict() | {
        "tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values())})
    return (directory / ADAPTER_WEIGHTS).stat().st_size


def load_adapter(directory: str | Path, backbone: Pretrained) -> Backbone:
    """The trained model of a fold's folder around its ``backbone``, in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory)
    info = AdapterInfo.read(directory)
    model = build_model(backbone, method_config(**info.method), len(info.labels), info.features.max_length)
    load_tensors_(model, load_file(str(directory / ADAPTER_WEIGHTS)), str(directory / ADAPTER_WEIGHTS))
    return model.eval()
