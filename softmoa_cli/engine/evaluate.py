"""Evaluating a finished run on its test (or validation) clips. Single-label: accuracy,
macro-F1, a per-class table and a confusion-matrix PNG; multi-label: mAP, micro- and macro-F1
at the run's tuned thresholds, d-prime and per-class AP. K-fold runs: the per-fold table with
mean and standard deviation."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .errors import SoftmoaError
from .fsutil import atomic_write_bytes
from .petl.adapter_files import adapter_task
from .train.rundir import fold_directory, load_run, run_data, summarize
from .data.splits import plan_splits
from .data.table import FeatureTable
from .train.distributed import World, resolve_device
from .train.evaluation import Precision, score_indices
from .train.metrics import per_class


def evaluate_run(run_dir: str | Path, split: str = "test", table: FeatureTable | None = None,
                 batch_size: int = 64, device: str = "cpu", message=None, dataset: str | None = None,
                 fold: int | None = None) -> dict:
    """Score every fold's best model (``fold``: that fold's only) on ``split`` ('test' or
    'valid') of the run's own plan, each clip by the window rule (``data/features.py``), as
    ``predict`` scores a file.

    Returns ``{"run", "split", "task", "labels", "folds", "summary", "per_class"}`` and, for a
    single-label run, ``"confusion"``. ``task`` "singlelabel": folds ``[{fold, accuracy,
    macro_f1, loss, clips}]``, summary ``{accuracy_mean, accuracy_std, macro_f1_mean,
    macro_f1_std}``, per-class rows (precision, recall, F1, support) and the confusion matrix
    summed over folds. ``task`` "multilabel": folds ``[{fold, mAP, micro_f1, macro_f1, d_prime,
    loss, clips}]`` (F1 at each fold's tuned thresholds), summary ``{mAP_mean, mAP_std, ...}``,
    per-class rows ``{label, ap, f1, support}``: AP and F1 averaged over the folds where the
    label has positives (None where it has none), positive clips summed.
    """
    if split not in ("test", "valid"):
        raise SoftmoaError(f"--split {split}: choose test or valid")
    run_dir = Path(run_dir)
    data = run_data(run_dir, dataset)
    if table is None:
        from .data.cache import open_dataset

        table = open_dataset(data, message or (lambda text: None))
    elif data.task == "multilabel":
        table = table.as_multi_label()
    world = World(device=resolve_device(device))
    precision = Precision("fp32", world.device)
    folds, class_rows, confusion = [], [], None
    plans = plan_splits(table, data)
    if fold is not None:
        folds = [plan.fold for plan in plans]
        if fold not in folds:
            raise SoftmoaError(f"--fold {fold}: {run_dir} has " + (f"folds {', '.join(map(str, folds))}"
                                                                   if folds[0] is not None else "no folds"))
        plans = [plan for plan in plans if plan.fold == fold]
    for plan in plans:
        model, labels, _ = load_run(run_dir, plan.fold)
        if list(labels) != list(table.label_names):
            raise SoftmoaError(_label_mismatch(run_dir, labels, table))
        multi, thresholds = adapter_task(fold_directory(run_dir, plan.fold))
        if multi != table.multi_label:
            raise SoftmoaError(f"{run_dir}: a {'multi' if multi else 'single'}-label run cannot be evaluated on the "
                               f"{'multi' if table.multi_label else 'single'}-label data set {table.name}")
        scored = score_indices(model.to(world.device), table, getattr(plan, split), batch_size, world, precision)
        found = scored.metrics(thresholds, per_class=multi)
        class_rows.append(found.pop("per_class", None))
        folds.append({"fold": plan.fold, **found})
        if not multi:
            confusion = scored.confusion if confusion is None else confusion + scored.confusion
    summary = {key: value for key, value in summarize(folds).items() if key != "folds"}
    report = {"run": str(run_dir), "split": split, "task": "multilabel" if table.multi_label else "singlelabel",
              "labels": table.label_names, "folds": folds, "summary": summary}
    if table.multi_label:
        return report | {"per_class": [{"label": label, **_mean_rows([rows[c] for rows in class_rows])}
                                       for c, label in enumerate(table.label_names)]}
    rows = [{"label": label, **row} for label, row in zip(table.label_names, per_class(confusion))]
    return report | {"per_class": rows, "confusion": confusion.tolist()}


def _mean_rows(rows: list[dict]) -> dict:
    """One label's multi-label rows of every fold as one: AP and F1 averaged over the folds where
    they exist (None where none has), support summed."""
    merged = {"support": sum(row["support"] for row in rows)}
    for name in ("ap", "f1"):
        values = [row[name] for row in rows if row[name] is not None]
        merged[name] = sum(values) / len(values) if values else None
    return {"ap": merged["ap"], "f1": merged["f1"], "support": merged["support"]}


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


def save_png(figure, path: str | Path) -> Path:
    """A figure as a PNG at ``path``, written atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def save_confusion_png(confusion: list[list[int]], labels: list[str], path: str | Path, title: str = "") -> Path:
    """``confusion_figure`` as a PNG at ``path``."""
    return save_png(confusion_figure(confusion, labels, title), path)
