"""A model ready to score audio: what predict, embed, evaluate, export and serve take.

A ``Classifier`` is the network (a backbone with its PETL modules and head, in eval mode) with
what scoring it needs: its ``labels``, its ``task`` (softmax or sigmoid scores, marks), the
decision ``thresholds`` tuned for it (multi-label), the ``features`` it was trained on (window,
front end, ``max_seconds``), and a line saying where it came from. It is made from a run's fold
(``runs.run.Run.classifier``) or from a classifier checkpoint (``from_pretrained``): an AudioSet
AST, a Hugging Face audio classifier, or a standalone export, which keeps its run's features and
thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from .data.features import FeatureConfig
from .errors import SoftmoaError
from .models.checkpoint import Pretrained
from .models.hf_features import default_features
from .task import Task


@dataclass(frozen=True)
class Classifier:
    model: nn.Module
    labels: list[str]
    task: Task
    features: FeatureConfig
    thresholds: list[float] | None = None
    source: str = ""  # where it came from, for a line to the user

    @property
    def description(self) -> str:
        """``<source>, <n> labels, <task>``."""
        return f"{self.source}, {len(self.labels)} labels, {self.task.title} ({self.task.activation})"

    @classmethod
    def from_pretrained(cls, pretrained: Pretrained) -> Classifier:
        """A classifier checkpoint as loaded (``models.pretrained.load_pretrained``); a checkpoint
        without a head (a bare backbone) is a SoftmoaError saying to fine-tune it."""
        extra = pretrained.extra
        if not extra.get("has_head", True):
            raise SoftmoaError(f"{pretrained.source}: this checkpoint has no classifier head; fine-tune it first")
        features = FeatureConfig(**extra["features"]) if "features" in extra else model_features(pretrained.model)
        return cls(pretrained.model.eval(), list(pretrained.labels), pretrained.task, features,
                   extra.get("thresholds"), pretrained.source)

    def quantized(self) -> Classifier:
        """This classifier with its frozen Linears in int8 (``quantize.quantize_frozen``), to score
        on the CPU. The model is changed in place: score with the one returned from then on."""
        from .quantize import quantize_frozen

        return replace(self, model=quantize_frozen(self.model), source=f"{self.source} (int8)")

    def with_thresholds(self, threshold: float | None) -> Classifier:
        """The same classifier marking every label at ``threshold`` (None: as it is)."""
        return self if threshold is None else replace(self, thresholds=[threshold] * len(self.labels))


def model_features(model: nn.Module) -> FeatureConfig:
    """The features a model without a record of its own takes: its family's front end with the
    extractor's defaults (``models.hf_features.default_features``), its config's mel bins and
    window."""
    config = model.config.to_dict()
    return FeatureConfig(**default_features(model.front_end, config) | {"max_length": config["max_length"]})
