"""The standalone export: one softmoa model folder (``softmoa.json`` + ``model.safetensors``,
``models/pretrained.py``'s format) with the backbone, the trained modules and the head, plus
the run's features and thresholds; ``load_pretrained`` and ``predict --checkpoint`` read it
without the run or its backbone.

Merged LoRA, full and linear runs are plain backbones. Adapters and mixtures cannot be folded into
the backbone: the folder records the method config and ``rebuild_modules`` (registered for the
loader through the ``softmoa.model_parts`` entry-point group) injects them again on loading."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..models.backbone import Backbone
from ..models.pretrained import Pretrained, load_pretrained, save_model
from ..petl.methods import apply_method, method_config, petl_modules
from ..registry import Registry
from ..runs.public import public_name
from .check import check_inputs, largest_difference, require_close
from .source import RunModel


def write_standalone(source: RunModel, model: Backbone, folder: Path) -> float:
    """Save ``model`` (``source``'s, LoRA merged) to ``folder`` and load it back; refuse it when its
    logits leave the run's by more than TOLERANCE. Returns the largest |logit difference|."""
    method = source.method.model_dump(mode="json") if petl_modules(model) else None
    extra = {"has_head": True, "features": asdict(source.features), "run": public_name(str(source.run)),
             "fold": source.fold}
    if source.classifier.thresholds is not None:
        extra["thresholds"] = list(source.classifier.thresholds)
    save_model(Pretrained(model, source.classifier.labels, source.classifier.task, public_name(str(source.run)), extra,
                          method), folder)
    reloaded = load_pretrained(folder).model.eval()
    difference = largest_difference(source.model, reloaded, check_inputs(source.features))
    require_close(difference, "standalone model", str(source.run))
    return difference


def rebuild_modules(model: Backbone, method: dict) -> Backbone:
    """A plain backbone with the PETL modules of ``method`` (a method config as JSON) injected."""
    return apply_method(model, method_config(**method))


def register(registry: Registry) -> None:
    """The ``softmoa.model_parts`` entry point: how a saved model's ``method`` is rebuilt."""
    registry.register("method", rebuild_modules)
