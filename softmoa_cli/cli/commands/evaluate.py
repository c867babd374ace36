"""``softmoa evaluate``: a run's best model(s) on its test or validation clips."""

from __future__ import annotations

import json
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
    from ...engine.evaluate import average_precision_figure, evaluate_run, save_confusion_png, save_png
    from ...engine.train.rundir import output_folder
    from ..console import err, line, note

    run_dir = chosen_run(run_dir)
    with err.status("evaluating…"):
        report = evaluate_run(run_dir, split, device=device, message=note, dataset=dataset, fold=fold)
    if report["task"] == "multilabel":
        png = save_png(average_precision_figure(report, f"{run_dir.name} · {split}"),
                       output_folder(run_dir) / f"ap-{split}.png")
        if as_json:
            print(json.dumps(report | {"ap_png": str(png)}, indent=2))
        else:
            show_multi_label(report, split)
            line(f"per-class AP: {png}")
        return
    png = save_confusion_png(report["confusion"], report["labels"], output_folder(run_dir) / f"confusion-{split}.png",
                             f"{run_dir.name} · {split}")
    if as_json:
        print(json.dumps(report | {"confusion_png": str(png)}, indent=2))
        return
    from ..console import Column, line, show_table

    show_table([Column("label", "left", whole=True), Column("precision"), Column("recall"), Column("F1"),
                Column("clips")],
               [[row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                 str(row["support"])] for row in report["per_class"]], f"per class · {split}")
    if len(report["folds"]) > 1:
        show_table([Column("fold", whole=True)] + [Column(name) for name in ("accuracy", "macro-F1", "clips")],
                   [[str(fold["fold"]), f"{fold['accuracy']:.4f}", f"{fold['macro_f1']:.4f}", str(fold["clips"])]
                    for fold in report["folds"]], "per fold")
    s = report["summary"]
    spread = lambda name: f"{s[name + '_mean']:.4f}" + (f" ± {s[name + '_std']:.4f}" if len(report["folds"]) > 1 else "")
    line(f"{split} accuracy {spread('accuracy')} · macro-F1 {spread('macro_f1')}")
    line(f"confusion matrix: {png}")


def show_multi_label(report: dict, split: str) -> None:
    """A multi-label report: per class AP, F1 and positive clips ("–" where a label has no
    positives), per fold (k-fold runs) and the summary line."""
    from ..console import Column, line, show_table

    figure = lambda value, digits=4: "–" if value is None else f"{value:.{digits}f}"
    show_table([Column("label", "left", whole=True), Column("AP"), Column("F1"), Column("positives")],
               [[row["label"], figure(row["ap"]), figure(row["f1"]), str(row["support"])]
                for row in report["per_class"]], f"per class · {split}")
    folds = report["folds"]
    if len(folds) > 1:
        show_table([Column("fold", whole=True)] + [Column(name) for name in ("mAP", "micro-F1", "macro-F1", "d′",
                                                                            "clips")],
                   [[str(fold["fold"]), figure(fold["mAP"]), figure(fold["micro_f1"]), figure(fold["macro_f1"]),
                     figure(fold["d_prime"], 3), str(fold["clips"])] for fold in folds], "per fold")
    s = report["summary"]
    spread = lambda name, digits=4: f"{s[name + '_mean']:.{digits}f}" + (
        f" ± {s[name + '_std']:.{digits}f}" if len(folds) > 1 else "")
    line(f"{split} mAP {spread('mAP')} · micro-F1 {spread('micro_f1')} · macro-F1 {spread('macro_f1')} · "
         f"d′ {spread('d_prime', 3)}")
