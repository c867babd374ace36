"""An adapter on disk: only the trained tensors (``adapter.safetensors``) plus a JSON that says
how to rebuild the model around them (``adapter.json``: backbone reference, method config,
labels, features, task, a multi-label adapter's decision thresholds, tool version), as PEFT
stores adapters.

A full fine-tune's "adapter" is the whole model. Loading needs the backbone: the caller
resolves ``backbone_reference`` (see ``train/rundir.py: load_backbone``) and hands it in.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ... import __version__
from ..data.features import FeatureConfig
from ..errors import CheckpointError
from ..fsutil import atomic_save_tensors, atomic_write_json
from ..models.ast import AST
from ..models.pretrained import Pretrained
from .build import build_model
from .methods import method_config

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"


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


def save_adapter(directory: Path, tensors: dict[str, torch.Tensor], backbone: str, method, labels: list[str],
                 features: FeatureConfig, thresholds: list[float] | None = None) -> int:
    """Write ``adapter.safetensors`` and ``adapter.json``; return the weights' size in bytes.

    ``backbone``: hub id, absolute path, or a path relative to ``directory``. ``thresholds``: a
    multi-label adapter's decision threshold per label (None: a single-label adapter).
    """
    atomic_save_tensors(directory / ADAPTER_WEIGHTS, tensors)
    task = {"task": "singlelabel"} if thresholds is None else {"task": "multilabel", "thresholds": list(thresholds)}
    atomic_write_json(directory / ADAPTER_CONFIG, {
        "format": "softmoa-adapter", "version": __version__, "backbone": backbone,
        "method": method.model_dump(mode="json"), "labels": list(labels), "features": asdict(features), **task,
        "tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values())})
    return (directory / ADAPTER_WEIGHTS).stat().st_size


def backbone_reference(directory: str | Path) -> str:
    """The backbone an adapter was trained on, as ``adapter.json`` stores it."""
    return _read_config(Path(directory))["backbone"]


def adapter_task(directory: str | Path) -> tuple[bool, list[float] | None]:
    """``(multi_label, thresholds)`` of an adapter: sigmoid outputs and a decision threshold per
    label, or softmax outputs and None (also for adapters saved before multi-label training)."""
    meta = _read_config(Path(directory))
    multi = meta.get("task") == "multilabel"
    return multi, meta.get("thresholds") if multi else None


def load_adapter(directory: str | Path, backbone: Pretrained) -> tuple[AST, list[str], FeatureConfig]:
    """The trained model of an adapter folder around its ``backbone``: (model in eval mode,
    labels, features)."""
    directory = Path(directory)
    meta = _read_config(directory)
    from safetensors.torch import load_file

    features = FeatureConfig(**meta["features"])
    model = build_model(backbone, method_config(**meta["method"]), len(meta["labels"]), features.max_length)
    load_tensors_(model, load_file(str(directory / ADAPTER_WEIGHTS)), str(directory / ADAPTER_WEIGHTS))
    return model.eval(), meta["labels"], features


def _read_config(directory: Path) -> dict:
    try:
        meta = json.loads((directory / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{directory / ADAPTER_CONFIG}: unreadable adapter config ({error})") from None
    if meta.get("format") != "softmoa-adapter":
        raise CheckpointError(f"{directory / ADAPTER_CONFIG}: not a softmoa adapter checkpoint")
    return meta
