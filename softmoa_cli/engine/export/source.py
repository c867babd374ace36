"""What an export starts from: one fold's best model of a finished run, as a ``Classifier``
(its model, labels, task, thresholds, features), with its method and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..classifier import Classifier
from ..petl.methods import MethodConfig
from ..runs.run import Run


@dataclass
class RunModel:
    """A run's classifier as training left it (eval mode, CPU, LoRA not merged), its ``method``,
    the ``run`` it came from and ``fold``: the fold's folder relative to the run (``.`` or
    ``fold-K``)."""

    classifier: Classifier
    method: MethodConfig
    run: Path
    fold: str

    @property
    def model(self):
        return self.classifier.model

    @property
    def features(self):
        return self.classifier.features


def read_run_model(run: Path, fold: int | None = None) -> RunModel:
    """Fold ``fold`` of ``run`` (None: the first, as predict takes); a SoftmoaError says when the
    folder is not a finished run or has no such fold."""
    opened = Run.open(run)
    classifier = opened.classifier(fold)
    directory = opened.fold_dir(fold)
    return RunModel(classifier, opened.config.method, run, directory.relative_to(opened.path).as_posix())
