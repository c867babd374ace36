"""``softmoa evaluate``: a run's best model(s) on its test or validation clips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from ..options import Device, Home, Json, RunDataset, RunDir, Runs, chosen_run


def evaluate(
    run_dir: RunDir = None,
    split: Annotated[Literal["test", "valid"], typer.Option(metavar="SPLIT", help="test or valid.")] = "test",
    fold: Annotated[int | None, typer.Option(min=1, metavar="K", show_default=False,
                                             help="K-fold runs: score fold K only (default: every fold).")] = None,
    dataset: RunDataset = None,
    home: Home = None,
    runs: Runs = None,
    as_json: Json = False,
    device: Device = "cpu",
) -> None:
    """Accuracy, macro-F1, a per-class table and a confusion-matrix PNG (k-fold runs: per fold and mean ± std).

    Multi-label runs: mAP, micro- and macro-F1 at the run's tuned thresholds, d′ and per-class
    AP and F1, and a PNG of the per-class AP (sorted, with positive clips and chance).

    RUN: a run folder or the hub id of a pushed run (owner/name; the confusion matrix then goes
    to runs/hub/OWNER--NAME/); without it, the most recent finished run under runs/.

    Examples:
      softmoa evaluate
      softmoa evaluate runs/fsdd-soft-20250101-120000 --split test --json
      softmoa evaluate me/birds-soft --dataset ~/birds/tags.csv
    """
    from ...engine.evaluate import evaluate_run, report_figure, save_png
    from ...engine.runs.run import Run
    from ...engine.task import task_named
    from ..console import err, line, note

    run_dir = chosen_run(run_dir)
    with err.status("evaluating…"):
        report = evaluate_run(run_dir, split, device=device, message=note, dataset=dataset, fold=fold)
    task = task_named(report["task"])
    png = save_png(report_figure(report, f"{Path(run_dir).name} · {split}"),
                   Run.open(run_dir).output_folder / f"{task.picture}-{split}.png")
    if as_json:
        print(json.dumps(report | {f"{task.picture}_png": str(png)}, indent=2))
        return
    show_report(report, task, split)
    line(f"{PICTURES[task.picture]}: {png}")


PICTURES = {"confusion": "confusion matrix", "ap": "per-class AP"}  # a task's picture, as the last line names it


def show_report(report: dict, task, split: str) -> None:
    """An evaluation report: per class the task's columns ("–" where a label has none, such as a
    multi-label label without positives), per fold (k-fold runs) and the summary line."""
    from ..console import Column, line, show_table

    figure = lambda value, digits: "–" if value is None else f"{value:.{digits}f}" if digits else str(value)
    show_table([Column("label", "left", whole=True)] + [Column(header) for header, _, _ in task.class_columns],
               [[row["label"], *(figure(row[key], digits) for _, key, digits in task.class_columns)]
                for row in report["per_class"]], f"per class · {split}")
    folds = report["folds"]
    if len(folds) > 1:
        show_table([Column("fold", whole=True)] + [Column(header) for header, _, _ in task.columns] + [Column("clips")],
                   [[str(fold["fold"]), *(figure(fold[key], digits) for _, key, digits in task.columns),
                     str(fold["clips"])] for fold in folds], "per fold")
    s = report["summary"]
    spread = lambda name, digits: f"{s[name + '_mean']:.{digits}f}" + (
        f" ± {s[name + '_std']:.{digits}f}" if len(folds) > 1 else "")
    line(f"{split} " + " · ".join(f"{header} {spread(key, digits)}" for header, key, digits in task.columns))
