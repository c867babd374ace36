"""What an export starts from: one fold's best model of a finished run, with its labels,
features, task and method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.features import FeatureConfig
from ..models.ast import AST
from ..petl.adapter_files import adapter_task
from ..petl.methods import MethodConfig
from ..train.rundir import fold_directory, load_run, read_run_config


@dataclass
class RunModel:
    """A run's model as training left it (eval mode, CPU, LoRA not merged). ``checkpoint``: the
    folder it came from, relative to the run (``.`` or ``fold-K``); ``thresholds``: a
    multi-label run's decision threshold per label, else None."""

    model: AST
    labels: list[str]
    features: FeatureConfig
    multi_label: bool
    thresholds: list[float] | None
    method: MethodConfig
    run: Path
    checkpoint: str


def read_run_model(run: Path, fold: int | None = None) -> RunModel:
    """Fold ``fold`` of ``run`` (None: the first, as predict takes); a SoftmoaError says when the
    folder is not a finished run or has no such fold."""
    directory = fold_directory(run, fold)
    model, labels, features = load_run(run, fold)
    multi_label, thresholds = adapter_task(directory)
    return RunModel(model.cpu().eval(), labels, features, multi_label, thresholds, read_run_config(run).method, run,
                    directory.relative_to(run).as_posix())
