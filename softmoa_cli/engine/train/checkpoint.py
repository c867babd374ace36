"""Adapter checkpoints: only the trained tensors (safetensors) plus a JSON that says how to
rebuild the model around them (backbone reference, method config, labels, features, version).

A full fine-tune's "adapter" is the whole model; a run of ``full`` or ``linear`` can serve as
the backbone of another run (``--checkpoint RUN_DIR``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ... import __version__
from ..api import build_model
from ..data.features import FeatureConfig
from ..errors import CheckpointError, SoftmoaError
from ..fsutil import atomic_save_tensors, atomic_write_json
from ..models.ast import AST
from ..models.checkpoints import Pretrained, load_pretrained
from ..petl.methods import method_config

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
RUN_FILE = "run.json"


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
                 features: FeatureConfig) -> int:
    """Write ``adapter.safetensors`` and ``adapter.json``; return the weights' size in bytes.

    ``backbone``: hub id, absolute path, or a path relative to ``directory``.
    """
    atomic_save_tensors(directory / ADAPTER_WEIGHTS, tensors)
    atomic_write_json(directory / ADAPTER_CONFIG, {
        "format": "softmoa-adapter", "version": __version__, "backbone": backbone,
        "method": method.model_dump(mode="json"), "labels": list(labels), "features": asdict(features),
        "tensors": len(tensors), "parameters": sum(t.numel() for t in tensors.values())})
    return (directory / ADAPTER_WEIGHTS).stat().st_size


def load_backbone(reference: str, base: Path | None = None) -> Pretrained:
    """A backbone from a checkpoint reference: hub id or path (relative to ``base``), or a run
    folder of a full fine-tune or linear probe."""
    path = Path(reference).expanduser()
    if base is not None and not path.is_absolute() and (base / path).exists():
        path = base / path
    if (path / RUN_FILE).is_file():
        model, labels, _ = load_run(path)
        run = json.loads((path / RUN_FILE).read_text())
        if run["method"] not in ("full", "linear"):
            raise SoftmoaError(f"{path}: a {run['method']!r} run has adapter modules; only a run of method "
                               "'full' (or 'linear') can serve as a backbone")
        return Pretrained(model, labels, False, str(path), {"has_head": True})
    return load_pretrained(path if path.exists() else reference)


def load_adapter(directory: str | Path) -> tuple[AST, list[str], FeatureConfig]:
    """Rebuild the trained model of an adapter checkpoint: (model in eval mode, labels, features)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{directory / ADAPTER_CONFIG}: unreadable adapter config ({error})") from None
    if meta.get("format") != "softmoa-adapter":
        raise CheckpointError(f"{directory / ADAPTER_CONFIG}: not a softmoa adapter checkpoint")
    from safetensors.torch import load_file

    features = FeatureConfig(**meta["features"])
    model = build_model(load_backbone(meta["backbone"], directory), method_config(**meta["method"]),
                        len(meta["labels"]), features.max_length)
    load_tensors_(model, load_file(str(directory / ADAPTER_WEIGHTS)), str(directory / ADAPTER_WEIGHTS))
    return model.eval(), meta["labels"], features


def fold_directory(run_dir: str | Path, fold: int | None = None) -> Path:
    """Where a fold's checkpoint lives: the run folder itself, or ``fold-K/`` of a k-fold run
    (``fold`` None: the first fold)."""
    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise SoftmoaError(f"{run_dir}: not a softmoa run folder (no readable {RUN_FILE})") from None
    folds = run.get("folds") or [None]
    if fold is not None and fold not in folds:
        raise SoftmoaError(f"{run_dir}: no fold {fold}; the run has folds {folds}")
    chosen = folds[0] if fold is None else fold
    return run_dir if chosen is None else run_dir / f"fold-{chosen}"


def load_run(run_dir: str | Path, fold: int | None = None) -> tuple[AST, list[str], FeatureConfig]:
    """The best model of a finished run: ``(model in eval mode, label names, feature config)``.

    A k-fold run holds one model per fold; ``fold`` None takes the first.
    """
    directory = fold_directory(run_dir, fold)
    if not (directory / ADAPTER_WEIGHTS).is_file():
        raise SoftmoaError(f"{directory}: training has not finished (no {ADAPTER_WEIGHTS}); "
                           f"continue it with `softmoa finetune --resume {run_dir}`")
    return load_adapter(directory)


def latest_run(root: str | Path = "runs") -> Path | None:
    """The most recently finished run under ``root`` (by its metrics file), or None."""
    finished = [path.parent for path in Path(root).glob(f"*/{RUN_FILE}")
                if json.loads(path.read_text()).get("finished")]
    return max(finished, key=lambda run: (run / RUN_FILE).stat().st_mtime, default=None)
