"""Ablation studies: a grid of ordinary fine-tuning runs, summarised as a table and a plot.

Every grid point (value x seed) is a normal run folder under ``<out>/runs/``. A point is done
once its ``point.json`` (its test score and cost figures) is written next to the run's files; an
interrupted study continues where it stopped (done points are read back, an unfinished run
resumes), so the same command finishes it.

The score is the runs' test score of their task (``Task.metric``: accuracy, or mAP on multi-label
data): the results name it (``metric``) and hold ``<metric>_mean``/``<metric>_std``, and the
table, Markdown and plot say which.
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

from .config import ModelConfig, RunConfig, build_config, dump_config, read_config
from .errors import SoftmoaError
from .fsutil import atomic_write_json, atomic_write_text
from .registry import unknown_name

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
        raise SoftmoaError(unknown_name("study", name, STUDIES))
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
    from .petl.methods import bottleneck_units, method_config

    sites = {key: soft[key] for key in ("location", "adapter_config", "init")}
    width = soft["experts"] * bottleneck_units(method_config(**soft), dim)
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
    """One finished run: its test score (mean over its folds; ``metric`` says which: "accuracy",
    or "mAP" for a multi-label run) and its cost figures."""

    value: Any
    seed: int
    score: float
    trainable_params: int
    flops: int  # analytic forward FLOPs per example
    epoch_seconds: float  # mean over the run's epochs
    peak_memory_mib: float  # one training step at the run's batch size
    metric: str = "accuracy"

    def to_dict(self) -> dict:
        """``point.json``: the score under its metric's name (``accuracy`` or ``mAP``), the metric
        named only when it is not accuracy (a single-label point reads as before)."""
        saved = asdict(self)
        saved[self.metric] = saved.pop("score")
        if self.metric == "accuracy":
            saved.pop("metric")
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> "PointResult":
        saved = dict(saved)
        metric = saved.pop("metric", "accuracy")
        score = saved.pop(metric)
        return cls(score=score, metric=metric, **saved)


def with_max_length(config: RunConfig, max_length: int | None) -> RunConfig:
    """``config`` with ``data.max_length`` set where it is unset (the length a run derived from
    the data, which the other points of a study then share)."""
    if config.data.max_length is not None or max_length is None:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"max_length": max_length})})


def saved_max_length(run_dir: Path) -> int | None:
    """The ``data.max_length`` a grid point's run recorded (its own or derived from the data), if any."""
    saved = run_dir / "config.yaml"
    return read_config(saved).data.max_length if saved.is_file() else None


def read_point(run_dir: Path, config: RunConfig) -> PointResult | None:
    """The result of a done grid point, None if not done; a folder of another config is an error
    (a run fills in the ``max_length`` it derived from the data; that is no other config)."""
    saved = run_dir / "config.yaml"
    if saved.is_file() and saved.read_text() != dump_config(with_max_length(config, saved_max_length(run_dir))):
        raise SoftmoaError(f"{run_dir}: holds a run of another config (changed options?); "
                           "use a new --out for a new study")
    point = run_dir / POINT_FILE
    return PointResult.from_dict(json.loads(point.read_text())) if point.is_file() else None


Train = Callable[[RunConfig, Path], "RunMetrics"]
"""``train(config, run_dir) -> metrics`` (``runs.results.RunMetrics``, as ``finetune`` returns)."""
Measure = Callable[[RunConfig, Path], dict]
"""``measure(config, run_dir) -> {trainable_params, flops, epoch_seconds, peak_memory_mib}``."""
OnPoint = Callable[[int, int, str, bool], None]
"""``on_point(index, total, label, reused)`` before each point (1-based index)."""


def run_study(study: Study, base: RunConfig, out: str | Path, values: tuple | None = None, seeds: int = 1,
              train: Train | None = None, measure: Measure | None = None,
              on_point: OnPoint | None = None, message: Callable[[str], None] = lambda text: None) -> list[dict]:
    """Run (or continue) every grid point, write ``results.csv``, ``results.md`` and ``plot.png``
    into ``out`` and return the summary rows (``summarize``).

    ``train`` defaults to ``finetune`` (opening the data set's cache), ``measure`` to
    ``measure_point``. Every point's config is validated before the first run starts. Defaults
    that depend on the backbone (the reduction rate) are derived once, here, and said through
    ``message``; one that depends on the data (``max_length``) is derived by the first point's
    run, which says it, and shared by the others.
    """
    out = Path(out)
    values = tuple(values or study.values)
    if seeds < 1:
        raise SoftmoaError(f"--seeds must be at least 1, not {seeds}")
    train = train or _finetune
    measure = measure or measure_point
    from .petl.methods import with_backbone_defaults
    from .petl.widths import PAPER_DIM

    for value in values:  # a bad value is an error before torch loads
        point_config(base, study, value, 0, PAPER_DIM)
    from .train.backbone import backbone_dim  # torch

    dim = backbone_dim(base.model)
    method, said = with_backbone_defaults(base.method, dim)
    base = base.model_copy(update={"method": method})
    grid = [(value, seed, point_config(base, study, value, seed, dim)) for value in values for seed in range(seeds)]
    if said:
        message(said)
    results, max_length = [], None
    for index, (value, seed, config) in enumerate(grid, 1):
        run_dir = point_dir(out, value, seed)
        config = with_max_length(config, max_length)
        result = read_point(run_dir, config)
        if on_point:
            on_point(index, len(grid), f"{study.name} = {value}, seed {seed}", result is not None)
        if result is None:
            metrics = train(config, run_dir)
            metric = metrics.task.metric
            result = PointResult(value, seed, metrics.summary()[f"{metric}_mean"], **measure(config, run_dir),
                                 metric=metric)
            atomic_write_json(run_dir / POINT_FILE, result.to_dict())
        results.append(result)
        max_length = max_length or saved_max_length(run_dir)
    return write_results(study, results, out, describe_base(study, base), plot_facts(point_dir(out, values[0], 0)))


def _finetune(config: RunConfig, run_dir: Path) -> dict:
    from .train import finetune

    return finetune(config, run_dir)[1]


def measure_point(config: RunConfig, run_dir: Path) -> dict:
    """Cost figures of a finished run: trainable parameters and FLOPs of its (first) model,
    mean epoch time from its log, peak memory of one training step at its batch size."""
    from .accounting import cost
    from .bench import step_peak_memory
    from .devices import resolve_device
    from .runs.run import Run

    run = Run.open(run_dir)
    model, features = run.model(), run.adapter().features
    spent = cost(model)
    seconds = [row.seconds for record in run.metrics.folds.values() for row in record.epochs]
    peak = step_peak_memory(model, config.training.batch_size, features.max_length, features.num_mel_bins,
                            resolve_device(config.training.device))
    return {"trainable_params": spent.trainable_params, "flops": spent.flops,
            "epoch_seconds": sum(seconds) / len(seconds), "peak_memory_mib": peak / 2 ** 20}


def summarize(results: list[PointResult]) -> list[dict]:
    """One row per value (in grid order): the score's mean and sample std over seeds
    (``accuracy_mean``/``accuracy_std``, or ``mAP_mean``/``mAP_std``), cost figures."""
    from .runs.results import mean_std

    metrics = {r.metric for r in results}
    if len(metrics) > 1:
        raise SoftmoaError("the study's points mix single-label runs (accuracy) and multi-label runs (mAP); "
                           "use a new --out for a new study")
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


COLUMNS = columns("accuracy")


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


def plot_facts(run_dir: Path) -> dict:
    """What a finished run says about its test split, for the plot: its ``task``, ``classes`` (its
    labels), ``clips`` (test clips of its smallest fold) and ``chance`` (the task's chance score
    and its words; None when the task needs the run's data and it cannot be opened)."""
    from .data.cache_open import open_dataset
    from .data.splits import plan_splits
    from .runs.run import Run

    run = Run.open(run_dir)
    task, classes = run.metrics.task, len(run.adapter().labels)

    def test_labels() -> list | None:  # each fold's test labels, read from the run's data (its cache)
        try:
            table = open_dataset(run.config.data).as_task(task)
            return [table.labels[plan.test] for plan in plan_splits(table, run.config.data)]
        except (SoftmoaError, OSError, ValueError):
            return None

    clips = min(int(result.scores["clips"]) for result in run.metrics.results)
    return {"task": task, "classes": classes, "clips": clips, "chance": task.chance(classes, test_labels)}


def write_results(study: Study, results: list[PointResult], out: Path, context: str = "",
                  facts: dict | None = None) -> list[dict]:
    """``results.csv`` (one row per value), ``results.md`` and ``plot.png`` in ``out``;
    ``context`` (e.g. ``describe_base``) heads the Markdown and the plot; ``facts``
    (``plot_facts``) give the plot its chance line and the worth of one test clip."""
    rows = summarize(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_text(out / "results.md", results_markdown(study, rows, context))
    plot_results(study, rows, out / "plot.png", context, facts)
    return rows


def results_markdown(study: Study, rows: list[dict], context: str = "") -> str:
    headers = columns(row_metric(rows[0]))
    lines = [f"Ablation `{study.name}`: {study.description}" + (f" ({context})" if context else ""), "",
             "| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_row(row).values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def accuracy_range(lows: list[float], highs: list[float], chance: float | None = None, min_span: float = 10.0,
                   top: float = 100.0) -> tuple[float, float]:
    """A y-range (accuracy in %) that shows differences at their true size: from chance (when
    known) or the lowest error bar, to the highest, with a margin, never narrower than
    ``min_span`` points (so one test clip cannot fill the axis), inside ``[0, top]``."""
    low = min([*lows, *([chance] if chance is not None else [])])
    high = max(highs)
    margin = max(2.0, 0.08 * (high - low))
    low, high = low - margin, high + margin
    if high - low < min_span:
        pad = (min_span - (high - low)) / 2
        low, high = low - pad, high + pad
    if low < 0:
        low, high = 0.0, min(top, high - low)
    if high > top:
        low, high = max(0.0, low - (high - top)), top
    return low, high


def results_figure(study: Study, rows: list[dict], context: str = "", facts: dict | None = None):
    """The ablation figure (a matplotlib Figure): the test score (the task's: accuracy or mAP, in %)
    against the swept value, mean with error bars of one std over seeds, chance dashed (``facts``
    from ``plot_facts``: the task's chance; the legend says when it is not known), on an honest
    y-range (``accuracy_range``); trainable parameters as pale bars on a second axis (log scale
    when they span more than 50x). For a task whose score counts clips, the legend says what one
    test clip is worth."""
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric, facts = row_metric(rows[0]), facts or {}
    x = list(range(len(rows)))
    means = [100 * row[f"{metric}_mean"] for row in rows]
    stds = [100 * row[f"{metric}_std"] for row in rows]
    params = [row["trainable_params"] for row in rows]
    seeds = max(row["seeds"] for row in rows)
    chance, chance_words = facts.get("chance") or (None, None)
    chance = None if chance is None else 100 * chance
    task = facts.get("task")
    clips = facts.get("clips") if task is not None and task.clip_share else None

    fig = Figure(figsize=(max(6.4, 1.2 * len(rows) + 3), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    twin = ax.twinx()
    _parameter_bars(twin, x, params)
    handles = _accuracy_points(ax, x, means, stds, seeds) + _chance_line(ax, chance, chance_words, clips, metric)
    ax.set_ylim(*accuracy_range([m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], chance))
    ax.set_xticks(x, [str(row["value"]) for row in rows])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(study.key if study.key != "name" else "method")
    ax.set_ylabel(f"test {metric} (%)", color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.set_zorder(twin.get_zorder() + 1)  # the accuracy line above the bars
    ax.patch.set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False)
    head = f"Ablation {study.name}: {study.description}, {seeds} seed{'s' * (seeds > 1)} per point"
    body = textwrap.fill(context, width=int(fig.get_figwidth() * 11)) if context else ""
    ax.set_title(head + (f"\n{body}" if body else ""), fontsize=10)
    return fig


def _chance_line(ax, chance: float | None, words: str | None, clips: int | None, metric: str) -> list:
    """The dashed chance level (%) when known, and the legend entries that explain it (``clips``:
    what one test clip is worth, for a score that counts clips)."""
    from matplotlib.lines import Line2D

    handles = []
    if chance is not None:
        ax.axhline(chance, linestyle="--", color="0.35", linewidth=1.2)
        handles.append(Line2D([], [], linestyle="--", color="0.35", label=words))
    else:
        handles.append(Line2D([], [], linestyle="none", label=f"chance {metric} not known (data not found): no line"))
    if clips:
        handles.append(Line2D([], [], linestyle="none",
                              label=f"one test clip = {100 / clips:.2f} points ({clips} clips)"))
    return handles


def _parameter_bars(twin, x: list[int], params: list[int]) -> None:
    """Trainable parameters as pale bars in the lower half of the axes (log scale past 50x)."""
    twin.bar(x, params, width=0.4, alpha=0.25, color="tab:orange")
    twin.set_ylabel("trainable parameters (bars)", color="tab:orange")
    twin.tick_params(axis="y", colors="tab:orange")
    if max(params) > 50 * max(1, min(params)):  # the bars in the lower half, clear of most accuracy labels
        twin.set_yscale("log")
        floor = max(1, min(params)) / 2
        twin.set_ylim(floor, max(params) ** 2 / floor)
        twin.set_yticks([tick for tick in twin.get_yticks() if floor <= tick <= 10 * max(params)])
        twin.minorticks_off()
    else:
        twin.set_ylim(0, 2 * max(params))
        twin.set_yticks([tick for tick in twin.get_yticks() if tick <= 1.2 * max(params)])


def _accuracy_points(ax, x: list[int], means: list[float], stds: list[float], seeds: int) -> list:
    """Mean score per point (error bars of one std over seeds), each labelled; the legend handles."""
    if seeds > 1:
        handles = [ax.errorbar(x, means, yerr=stds, marker="o", capsize=5, color="tab:blue",
                               label=f"mean ± 1 std over {seeds} seeds")]
    else:
        handles = ax.plot(x, means, marker="o", color="tab:blue", label="1 seed: no spread to show")
    for xi, mean, std in zip(x, means, stds):
        text = f"{mean:.1f}" + (f" ± {std:.1f}" if seeds > 1 else "")
        ax.annotate(text, (xi, mean + std), xytext=(0, 5), textcoords="offset points", ha="center",
                    fontsize=8, color="tab:blue")
    return list(handles)


def plot_results(study: Study, rows: list[dict], path: Path, context: str = "", facts: dict | None = None) -> Path:
    """``results_figure`` saved as a PNG at ``path``."""
    fig = results_figure(study, rows, context, facts)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
