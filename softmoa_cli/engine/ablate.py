"""Ablation studies: a grid of ordinary fine-tuning runs, summarised as a table and a plot.

Every grid point (value x seed) is a normal run folder under ``<out>/runs/``. A point is done
once its ``point.json`` (accuracy and cost figures) is written next to the run's files; an
interrupted study continues where it stopped (done points are read back, an unfinished run
resumes), so the same command finishes it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import ModelConfig, RunConfig, build_config, dump_config
from .errors import SoftmoaError
from .fsutil import atomic_write_json, atomic_write_text
from .petl.layers import bottleneck_width
from .train.backbone import backbone_dim
from .train.metrics import mean_std

POINT_FILE = "point.json"


def _choice(*options: str) -> Callable[[str], str]:
    """A parser accepting only ``options`` (ValueError otherwise)."""
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text
    return parse


@dataclass(frozen=True)
class Study:
    """One swept method field. ``defaults``: method fields every point starts from (the preset's
    method is replaced when ``name`` differs; ``--set method.KEY=...`` overrides them)."""

    name: str
    description: str
    key: str  # the swept method field; "name" sweeps methods at a comparable budget
    values: tuple
    parse: Callable[[str], Any]
    defaults: dict


METHOD_NAMES = ("linear", "adapter", "lora", "dense", "soft", "full")

STUDIES: dict[str, Study] = {s.name: s for s in [
    Study("slots", "Soft-MoA slots per expert", "slots", (1, 2, 4, 8), int,
          {"name": "soft", "experts": 8}),
    Study("experts", "Soft-MoA experts", "experts", (2, 4, 8, 16), int, {"name": "soft", "slots": 1}),
    Study("reduction-rate", "Soft-MoA bottleneck reduction rate", "reduction_rate", (32, 64, 128, 256), float,
          {"name": "soft"}),
    Study("location", "Soft-MoA location (Pfeiffer)", "location", ("mhsa", "ffn"), _choice("mhsa", "ffn"),
          {"name": "soft", "adapter_config": "pfeiffer"}),
    Study("adapter-config", "Soft-MoA at one location (Pfeiffer) or both (Houlsby)", "adapter_config",
          ("pfeiffer", "houlsby"), _choice("pfeiffer", "houlsby"), {"name": "soft"}),
    Study("init", "Soft-MoA init: zero up-projection or the research code's N(0, 0.02)", "init",
          ("zero_up", "research"), _choice("zero_up", "research"), {"name": "soft"}),
    Study("methods", "PETL methods at the Soft-MoA's budget", "name", METHOD_NAMES, _choice(*METHOD_NAMES),
          {"name": "soft"}),
]}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise SoftmoaError(f"unknown study {name!r}; choose one of: {', '.join(STUDIES)}")
    return STUDIES[name]


def parse_values(study: Study, text: str | None) -> tuple | None:
    """``"1,2,4"`` -> ``(1, 2, 4)`` with the study's type (None for no text); a bad value is a
    one-line error. Whole floats become ints, so ``64`` and ``64.0`` name the same point."""
    if text is None:
        return None
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = study.parse(item)
        except ValueError:
            raise SoftmoaError(f"--values {text}: {item!r} is not a value of study {study.name!r} "
                               f"(default grid: {', '.join(map(str, study.values))})") from None
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        values.append(value)
    if len(set(values)) != len(values):
        raise SoftmoaError(f"--values {text}: a value is listed twice")
    return tuple(values)


def study_config(study: Study, preset: dict, overrides: dict[str, Any] | None = None, source: str = "preset",
                 flags: dict[str, str] | None = None) -> RunConfig:
    """The study's base config: ``preset``, then the study's method defaults, then ``overrides``
    (dotted keys, as ``build_config``). Setting the swept field itself is an error."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    swept = f"method.{study.key}"
    if swept in overrides:
        flag = (flags or {}).get(swept, swept)
        raise SoftmoaError(f"{flag}: study {study.name!r} sweeps {swept}; give its values with --values")
    defaults = {f"method.{key}": value for key, value in study.defaults.items()}
    return build_config(preset, defaults | overrides, source, flags)


def comparable_method(name: str, soft: dict, dim: int) -> dict:
    """Method ``name`` at the budget of the Soft-MoA ``soft`` (a method section) on width ``dim``.

    The experts' bottlenecks summed, W = experts x round(d / rate), set the budget: a single
    adapter of width W at the same sites, Dense-MoA with the same experts, LoRA on q and v of
    rank W x sites / 2 (4 d rank = 2 d W per block) with alpha = rank. Linear and full are as is.
    """
    sites = {key: soft[key] for key in ("location", "adapter_config", "init")}
    width = soft["experts"] * bottleneck_width(dim, soft["reduction_rate"])
    if name == "soft":
        return soft
    if name == "dense":
        return {"name": "dense", "experts": soft["experts"], "reduction_rate": soft["reduction_rate"], **sites}
    if name == "adapter":
        return {"name": "adapter", "reduction_rate": dim / width, **sites}
    if name == "lora":
        rank = max(1, round(width * (2 if soft["adapter_config"] == "houlsby" else 1) / 2))
        return {"name": "lora", "rank": rank, "alpha": float(rank)}
    return {"name": name}


def point_config(base: RunConfig, study: Study, value, seed: int, dim: int) -> RunConfig:
    """The run config of one grid point: ``base`` with the swept value, seed ``base + seed``."""
    raw = base.model_dump(mode="json")
    method = raw["method"]
    raw["method"] = comparable_method(value, method, dim) if study.key == "name" else method | {study.key: value}
    raw["training"]["seed"] = base.training.seed + seed
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        raise SoftmoaError(f"study {study.name!r}, value {value}: {problem['loc'][-1]}: "
                           f"{problem['msg']}") from None


def point_dir(out: Path, value, seed: int) -> Path:
    return out / "runs" / f"{value}-seed{seed}"


@dataclass
class PointResult:
    """One finished run: test accuracy (mean over its folds) and its cost figures."""

    value: Any
    seed: int
    accuracy: float
    trainable_params: int
    flops: int  # analytic forward FLOPs per example
    epoch_seconds: float  # mean over the run's epochs
    peak_memory_mib: float  # one training step at the run's batch size


def read_point(run_dir: Path, config: RunConfig) -> PointResult | None:
    """The result of a done grid point, None if not done; a folder of another config is an error."""
    saved = run_dir / "config.yaml"
    if saved.is_file() and saved.read_text() != dump_config(config):
        raise SoftmoaError(f"{run_dir}: holds a run of another config (changed options?); "
                           "use a new --out for a new study")
    point = run_dir / POINT_FILE
    return PointResult(**json.loads(point.read_text())) if point.is_file() else None


Train = Callable[[RunConfig, Path], dict]
"""``train(config, run_dir) -> metrics`` (as ``finetune``'s metrics.json)."""
Measure = Callable[[RunConfig, Path], dict]
"""``measure(config, run_dir) -> {trainable_params, flops, epoch_seconds, peak_memory_mib}``."""
OnPoint = Callable[[int, int, str, bool], None]
"""``on_point(index, total, label, reused)`` before each point (1-based index)."""


def run_study(study: Study, base: RunConfig, out: str | Path, values: tuple | None = None, seeds: int = 1,
              train: Train | None = None, measure: Measure | None = None,
              on_point: OnPoint | None = None) -> list[dict]:
    """Run (or continue) every grid point, write ``results.csv``, ``results.md`` and ``plot.png``
    into ``out`` and return the summary rows (``summarize``).

    ``train`` defaults to ``finetune`` (opening the data set's cache), ``measure`` to
    ``measure_point``. Every point's config is validated before the first run starts.
    """
    out = Path(out)
    values = tuple(values or study.values)
    if seeds < 1:
        raise SoftmoaError(f"--seeds must be at least 1, not {seeds}")
    train = train or _finetune
    measure = measure or measure_point
    dim = backbone_dim(base.model) if study.key == "name" else 0
    grid = [(value, seed, point_config(base, study, value, seed, dim)) for value in values for seed in range(seeds)]
    results = []
    for index, (value, seed, config) in enumerate(grid, 1):
        run_dir = point_dir(out, value, seed)
        result = read_point(run_dir, config)
        if on_point:
            on_point(index, len(grid), f"{study.name} = {value}, seed {seed}", result is not None)
        if result is None:
            metrics = train(config, run_dir)
            result = PointResult(value, seed, metrics["summary"]["accuracy_mean"], **measure(config, run_dir))
            atomic_write_json(run_dir / POINT_FILE, asdict(result))
        results.append(result)
    return write_results(study, results, out, describe_base(study, base))


def _finetune(config: RunConfig, run_dir: Path) -> dict:
    from .train import finetune

    return finetune(config, run_dir)[1]


def measure_point(config: RunConfig, run_dir: Path) -> dict:
    """Cost figures of a finished run: trainable parameters and FLOPs of its (first) model,
    mean epoch time from its log, peak memory of one training step at its batch size."""
    from .accounting import cost
    from .bench import step_peak_memory
    from .train import load_run
    from .train.distributed import resolve_device

    model, _, features = load_run(run_dir)
    spent = cost(model)
    with open(run_dir / "log.csv") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    peak = step_peak_memory(model, config.training.batch_size, features.max_length, features.num_mel_bins,
                            resolve_device(config.training.device))
    return {"trainable_params": spent.trainable_params, "flops": spent.flops,
            "epoch_seconds": sum(seconds) / len(seconds), "peak_memory_mib": peak / 2 ** 20}


def summarize(results: list[PointResult]) -> list[dict]:
    """One row per value (in grid order): accuracy mean and sample std over seeds, cost figures."""
    rows = []
    for value in dict.fromkeys(r.value for r in results):
        points = [r for r in results if r.value == value]
        mean, std = mean_std([p.accuracy for p in points])
        rows.append({"value": value, "seeds": len(points), "accuracy_mean": mean, "accuracy_std": std,
                     "trainable_params": points[0].trainable_params, "flops": points[0].flops,
                     "epoch_seconds": sum(p.epoch_seconds for p in points) / len(points),
                     "peak_memory_mib": max(p.peak_memory_mib for p in points)})
    return rows


COLUMNS = {"value": "value", "accuracy": "test accuracy % (mean ± std)", "seeds": "seeds",
           "trainable_params": "trainable params", "flops": "GFLOPs / example", "epoch_seconds": "s / epoch",
           "peak_memory_mib": "peak MiB"}


def format_row(row: dict) -> dict[str, str]:
    """A summary row as display strings, keyed like ``COLUMNS`` (for Markdown and the terminal)."""
    return {"value": str(row["value"]),
            "accuracy": f"{100 * row['accuracy_mean']:.2f} ± {100 * row['accuracy_std']:.2f}",
            "seeds": str(row["seeds"]), "trainable_params": f"{row['trainable_params']:,}",
            "flops": f"{row['flops'] / 1e9:.3f}", "epoch_seconds": f"{row['epoch_seconds']:.1f}",
            "peak_memory_mib": f"{row['peak_memory_mib']:.1f}"}


def describe_base(study: Study, base: RunConfig) -> str:
    """One line: data set, epochs and the method options every point shares."""
    method = base.method.model_dump(mode="json")
    shared = ", ".join(f"{key}={value}" for key, value in method.items() if key not in ("name", study.key))
    reference = "reference " if study.key == "name" else ""
    return f"{base.data.dataset}, {base.training.epochs} epochs, {reference}{method['name']}" + (f": {shared}" if shared else "")


def write_results(study: Study, results: list[PointResult], out: Path, context: str = "") -> list[dict]:
    """``results.csv`` (one row per value), ``results.md`` and ``plot.png`` in ``out``;
    ``context`` (e.g. ``describe_base``) heads the Markdown and the plot."""
    rows = summarize(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_text(out / "results.md", results_markdown(study, rows, context))
    plot_results(study, rows, out / "plot.png", context)
    return rows


def results_markdown(study: Study, rows: list[dict], context: str = "") -> str:
    lines = [f"Ablation `{study.name}`: {study.description}" + (f" ({context})" if context else ""), "",
             "| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(format_row(row).values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_results(study: Study, rows: list[dict], path: Path, context: str = "") -> Path:
    """Test accuracy against the swept value (error bars: std over seeds); trainable parameters
    as bars on a second axis (log scale when they span more than 50x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(len(rows)))
    params = [row["trainable_params"] for row in rows]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(rows) + 2), 3.6))
    twin = ax.twinx()
    twin.bar(x, params, width=0.35, alpha=0.25, color="tab:orange")
    twin.set_ylabel("trainable parameters", color="tab:orange")
    if max(params) > 50 * max(1, min(params)):
        twin.set_yscale("log")
    ax.errorbar(x, [100 * row["accuracy_mean"] for row in rows], yerr=[100 * row["accuracy_std"] for row in rows],
                marker="o", capsize=4, color="tab:blue")
    ax.set_xticks(x, [str(row["value"]) for row in rows])
    ax.set_xlabel(study.key if study.key != "name" else "method")
    ax.set_ylabel("test accuracy (%)", color="tab:blue")
    ax.set_zorder(twin.get_zorder() + 1)  # the accuracy line above the bars
    ax.patch.set_visible(False)
    seeds = max(row["seeds"] for row in rows)
    ax.set_title(f"{study.description}, {seeds} seed{'s' * (seeds > 1)}\n{context}", fontsize=8, wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
