"""Evaluating a finished run on its test (or validation) clips, with its task's metrics
(``engine/task.py``: accuracy, macro-F1 and a confusion matrix; or mAP, micro- and macro-F1 at the
run's tuned thresholds, d-prime and per-class AP), per fold and as mean and standard deviation
over folds; and the report's picture (``PICTURES``: the task's)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .data.splits import plan_splits
from .data.table import FeatureTable
from .devices import Precision, resolve_device
from .distributed import World
from .errors import SoftmoaError
from .fsutil import atomic_write_bytes
from .runs.results import summarize
from .runs.run import Run
from .scoring.evaluation import score_indices


def evaluate_run(run_dir: str | Path, split: str = "test", table: FeatureTable | None = None,
                 batch_size: int = 64, device: str = "cpu", message=None, dataset: str | None = None,
                 fold: int | None = None) -> dict:
    """Score every fold's best model (``fold``: that fold's only) on ``split`` ('test' or
    'valid') of the run's own plan, each clip by the window rule (``data/features.py``), as
    ``predict`` scores a file.

    Returns ``{"run", "split", "task", "labels", "folds", "summary", "per_class"}`` and what the
    task's picture needs (single-label: ``"confusion"``, summed over folds). ``folds``: each
    fold's task metrics with ``loss`` and ``clips`` (multi-label F1 at the fold's tuned
    thresholds); ``summary``: their mean and std (``accuracy_mean``, ...); ``per_class``: a row
    per label (``label`` and the task's ``class_columns``), merged over folds by the task.
    """
    if split not in ("test", "valid"):
        raise SoftmoaError(f"`split` {split}: choose test or valid")
    run = Run.open(run_dir)
    data = run.data(dataset)
    if table is None:
        from .data.cache_open import open_dataset

        table = open_dataset(data, message or (lambda text: None), front_end=run.adapter().features)
    task = run.metrics.task
    if data.task_of(table.labels) is not task:
        raise SoftmoaError(f"{run_dir}: a {task.title} run cannot be evaluated on the {table.task.title} data set "
                           f"{table.name}")
    table = table.as_task(task)
    world = World(device=resolve_device(device))
    precision = Precision("fp32", world.device)
    folds, parts = [], []
    for plan in _plans(run, table, data, fold):
        classifier = run.classifier(plan.fold)
        if list(classifier.labels) != list(table.label_names):
            raise SoftmoaError(_label_mismatch(run_dir, classifier.labels, table))
        scored = score_indices(classifier.model.to(world.device), table, getattr(plan, split), batch_size, world,
                               precision)
        found = scored.metrics(classifier.thresholds, per_class=True)
        parts.append({key: found.pop(key) for key in ("per_class", "confusion") if key in found})
        folds.append({"fold": plan.fold, **found})
    merged = task.merge_classes(parts)
    summary = {key: value for key, value in summarize(task, folds).items() if key != "folds"}
    per_class = [{"label": label, **row} for label, row in zip(table.label_names, merged.pop("per_class"))]
    return {"run": str(run_dir), "split": split, "task": task.name, "labels": table.label_names, "folds": folds,
            "summary": summary, "per_class": per_class, **merged}


def _plans(run: Run, table: FeatureTable, data, fold: int | None) -> list:
    """The run's plan of its data (``fold``: that fold's only; a SoftmoaError naming the folds)."""
    plans = plan_splits(table, data)
    if fold is None:
        return plans
    folds = [plan.fold for plan in plans]
    if fold not in folds:
        raise SoftmoaError(f"`fold` {fold}: {run.reference} has " + (f"folds {', '.join(map(str, folds))}"
                                                                     if folds[0] is not None else "no folds"))
    return [plan for plan in plans if plan.fold == fold]


def _label_mismatch(run_dir: Path, labels: list[str], table: FeatureTable) -> str:
    """One line saying how the run's labels differ from the data set's."""
    ours, theirs = list(labels), list(table.label_names)
    only_run = [label for label in ours if label not in theirs]
    only_data = [label for label in theirs if label not in ours]
    if not only_run and not only_data:
        detail = "the same labels in another order"
    else:
        detail = f"only in the run: {only_run[:5] or 'none'}; only in the data: {only_data[:5] or 'none'}"
    return (f"{run_dir}: the run was trained on {len(ours)} labels that do not match the {len(theirs)} of data set "
            f"{table.name} ({detail}); evaluate it on the data it was trained on")


def confusion_figure(confusion: list[list[int]], labels: list[str], title: str = ""):
    """The confusion-matrix figure (a matplotlib Figure): rates normalised per true class (true
    down, predicted across), counts in the cells up to 20 labels, the accuracy (and the clips it
    counts) in the title; x labels upright while every label is at most 4 characters."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = torch.tensor(confusion, dtype=torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n, longest = len(labels), max((len(str(label)) for label in labels), default=0)
    correct, total = int(counts.diag().sum()), int(counts.sum())
    score = f"accuracy {correct / total:.1%} ({correct} / {total} clips)" if total else "no clips"
    size = min(4 + 0.3 * n, 24)
    extra = 0.0 if longest <= 4 else min(0.07 * longest, 2.0)  # room for long labels, both axes
    figure = Figure(figsize=(size + 1.2 + extra, size + extra), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    font = 10 if n <= 12 else 8 if n <= 30 else 6
    if longest <= 4:
        axes.set_xticks(range(n), labels, fontsize=font)
    elif n <= 30:
        axes.set_xticks(range(n), labels, fontsize=font, rotation=45, ha="right", rotation_mode="anchor")
    else:
        axes.set_xticks(range(n), labels, fontsize=font, rotation=90)
    axes.set_yticks(range(n), labels, fontsize=font)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(" · ".join(part for part in (title, score) if part), fontsize=11)
    if n <= 20:
        for (i, j), value in zip(((i, j) for i in range(n) for j in range(n)), counts.flatten()):
            if value:
                axes.text(j, i, int(value), ha="center", va="center", fontsize=font - 1,
                          color="white" if rates[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.03, label="share of the true class")
    return figure


def average_precision_figure(report: dict, title: str = ""):
    """A multi-label report's per-class AP (a matplotlib Figure): one bar per label, highest AP at
    the top, each bar labelled with its AP and positive clips; beside each bar a dashed mark at
    its chance AP (the label's share of positive clips: what a random ranking scores); the mAP as
    a vertical line. Labels without positive clips have no AP and are listed under the axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    clips = sum(fold["clips"] for fold in report["folds"])
    rows = sorted((row for row in report["per_class"] if row["ap"] is not None), key=lambda row: -row["ap"])
    absent = [row["label"] for row in report["per_class"] if row["ap"] is None]
    n = max(len(rows), 1)
    font = 9 if n <= 30 else 7 if n <= 80 else 5
    figure = Figure(figsize=(9, min(2.2 + 0.28 * n, 40)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    y = list(range(len(rows)))
    axes.barh(y, [row["ap"] for row in rows], color="tab:blue", alpha=0.8, label="AP")
    chance = [row["support"] / clips if clips else 0 for row in rows]
    axes.scatter(chance, y, marker="|", s=160, color="0.2", zorder=3, label="chance AP (share of positive clips)")
    for k, (row, level) in enumerate(zip(rows, chance)):  # right of the bar and of its chance mark
        axes.text(max(row["ap"], level) + 0.015, k, f"{row['ap']:.3f}  ({row['support']} positive)", va="center",
                  fontsize=font - 1)
    mean = report["summary"]["mAP_mean"]
    axes.axvline(mean, color="tab:red", linestyle="--", linewidth=1.2, label=f"mAP {mean:.3f}")
    axes.set_yticks(y, [row["label"] for row in rows], fontsize=font)
    axes.set_ylim(len(rows) - 0.5, -0.5)  # the best at the top
    axes.set_xlim(0, 1.3)  # room for the labels beside the longest bars
    axes.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_xlabel("average precision" + (f"\nno positive clip, so no AP: {', '.join(absent)}" if absent else ""))
    axes.set_title(" · ".join(part for part in (title, f"per-class AP over {clips} clips") if part), fontsize=11)
    figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return figure


def report_figure(report: dict, title: str = ""):
    """The picture of an ``evaluate_run`` report, the task's (``Task.picture``: ``PICTURES``)."""
    from .task import task_named

    return PICTURES[task_named(report["task"]).picture](report, title)


def save_png(figure, path: str | Path) -> Path:
    """A figure as a PNG at ``path``, written atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def save_confusion_png(confusion: list[list[int]], labels: list[str], path: str | Path, title: str = "") -> Path:
    """``confusion_figure`` as a PNG at ``path``."""
    return save_png(confusion_figure(confusion, labels, title), path)


PICTURES = {"confusion": lambda report, title: confusion_figure(report["confusion"], report["labels"], title),
            "ap": average_precision_figure}
"""A task's picture of a report (``Task.picture``) -> the function that draws it."""
