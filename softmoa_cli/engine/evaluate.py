"""Evaluating a finished run on its test (or validation) clips: accuracy, macro-F1, a
per-class table, a confusion-matrix PNG and, for k-fold runs, the per-fold table with mean
and standard deviation."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .config import read_config
from .errors import SoftmoaError
from .fsutil import atomic_write_bytes
from .train.rundir import load_run
from .data.splits import plan_splits
from .data.table import FeatureTable
from .train.distributed import World, resolve_device
from .train.evaluation import Precision, evaluate_indices
from .train.metrics import accuracy, macro_f1, mean_std, per_class


def evaluate_run(run_dir: str | Path, split: str = "test", table: FeatureTable | None = None,
                 batch_size: int = 64, device: str = "cpu", message=None) -> dict:
    """Score every fold's best model on ``split`` ('test' or 'valid') of the run's own plan,
    each clip by the window rule (``data/features.py``), as ``predict`` scores a file.

    Returns ``{"split", "labels", "folds": [{fold, accuracy, macro_f1, clips}], "summary":
    {accuracy_mean, accuracy_std, macro_f1_mean, macro_f1_std}, "per_class": [...],
    "confusion": [[...]]}`` with per-class rows and the confusion matrix summed over folds.
    """
    if split not in ("test", "valid"):
        raise SoftmoaError(f"--split {split}: choose test or valid")
    run_dir = Path(run_dir)
    config = read_config(run_dir / "config.yaml")
    if table is None:
        from .data.cache import open_dataset

        table = open_dataset(config.data, message or (lambda text: None))
    world = World(device=resolve_device(device))
    precision = Precision("fp32", world.device)
    total = None
    folds = []
    for plan in plan_splits(table, config.data):
        model, labels, _ = load_run(run_dir, plan.fold)
        if list(labels) != list(table.label_names):
            raise SoftmoaError(_label_mismatch(run_dir, labels, table))
        confusion, loss = evaluate_indices(model.to(world.device), table, getattr(plan, split), batch_size, world,
                                           precision)
        total = confusion if total is None else total + confusion
        folds.append({"fold": plan.fold, "accuracy": accuracy(confusion), "macro_f1": macro_f1(confusion),
                      "loss": loss, "clips": int(confusion.sum())})
    summary = {}
    for name in ("accuracy", "macro_f1"):
        mean, std = mean_std([f[name] for f in folds])
        summary |= {f"{name}_mean": mean, f"{name}_std": std}
    rows = [{"label": label, **row} for label, row in zip(table.label_names, per_class(total))]
    return {"run": str(run_dir), "split": split, "labels": table.label_names, "folds": folds, "summary": summary,
            "per_class": rows, "confusion": total.tolist()}


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


def save_confusion_png(confusion: list[list[int]], labels: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true label down, predicted across) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.tensor(confusion, dtype=torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = min(4 + 0.3 * len(labels), 24)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    if len(labels) <= 20:
        for (i, j), value in zip(((i, j) for i in range(len(labels)) for j in range(len(labels))), counts.flatten()):
            if value:
                axes.text(j, i, int(value), ha="center", va="center", fontsize=7,
                          color="white" if rates[i, j] > 0.5 else "black")
    figure.colorbar(image, fraction=0.046, pad=0.04, label="share of the true class")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
