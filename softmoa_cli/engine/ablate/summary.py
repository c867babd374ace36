"""A study's results, one row per swept value (the score's mean and std over seeds, cost figures),
and their text: ``results.csv``, ``results.md`` and the terminal table's strings."""

from __future__ import annotations

import csv
import io

from ..config import RunConfig
from ..errors import SoftmoaError
from .points import PointResult
from .studies import Study


def summarize(results: list[PointResult]) -> list[dict]:
    """One row per value (in grid order): the score's mean and sample std over seeds
    (``accuracy_mean``/``accuracy_std``, or ``mAP_mean``/``mAP_std``), cost figures."""
    from ..runs.results import mean_std

    metrics = {r.metric for r in results}
    if len(metrics) > 1:
        raise SoftmoaError("the study's points mix single-label runs (accuracy) and multi-label runs (mAP); "
                           "use a new `out` for a new study")
    metric = metrics.pop() if metrics else "accuracy"
    rows = []
    for value in dict.fromkeys(r.value for r in results):
        points = [r for r in results if r.value == value]
        mean, std = mean_std([p.score for p in points])
        rows.append({"value": value, "seeds": len(points), "metric": metric, f"{metric}_mean": mean,
                     f"{metric}_std": std,
                     "trainable_params": points[0].trainable_params, "flops": points[0].flops,
                     "epoch_seconds": sum(p.epoch_seconds for p in points) / len(points),
                     "peak_memory_mib": max(p.peak_memory_mib for p in points)})
    return rows


def row_metric(row: dict) -> str:
    """The score of a summary row (its runs' task's: accuracy, or mAP)."""
    return row["metric"]


def columns(metric: str = "accuracy") -> dict[str, str]:
    """The display columns, key -> header, for a study scored by ``metric``."""
    return {"value": "value", metric: f"test {metric} % (mean ± std)", "seeds": "seeds",
            "trainable_params": "trainable params", "flops": "GFLOPs / example", "epoch_seconds": "s / epoch",
            "peak_memory_mib": "peak MiB"}


def format_row(row: dict) -> dict[str, str]:
    """A summary row as display strings, keyed like ``columns(row_metric(row))`` (for Markdown
    and the terminal)."""
    metric = row_metric(row)
    return {"value": str(row["value"]),
            metric: f"{100 * row[f'{metric}_mean']:.2f} ± {100 * row[f'{metric}_std']:.2f}",
            "seeds": str(row["seeds"]), "trainable_params": f"{row['trainable_params']:,}",
            "flops": f"{row['flops'] / 1e9:.3f}", "epoch_seconds": f"{row['epoch_seconds']:.1f}",
            "peak_memory_mib": f"{row['peak_memory_mib']:.1f}"}


def describe_base(study: Study, base: RunConfig) -> str:
    """One line: data set, epochs and the method options every point shares."""
    method = base.method.model_dump(mode="json")
    shared = ", ".join(f"{key}={value}" for key, value in method.items() if key not in ("name", study.key))
    reference = "reference " if study.key == "name" else ""
    return f"{base.data.dataset}, {base.training.epochs} epochs, {reference}{method['name']}" + (f": {shared}" if shared else "")


def results_csv(rows: list[dict]) -> str:
    """``results.csv``: the summary rows as they are, one line per value under a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def results_markdown(study: Study, rows: list[dict], context: str = "") -> str:
    """``results.md``: a heading naming the study (and ``context``), then the display table."""
    headers = columns(row_metric(rows[0]))
    lines = [f"Ablation `{study.name}`: {study.description}" + (f" ({context})" if context else ""), "",
             "| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_row(row).values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"
