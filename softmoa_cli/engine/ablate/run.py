"""Running a study: every grid point trained (or read back when done) and measured, then the
study's files written: ``results.csv``, ``results.md`` and ``plot.png``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config import RunConfig
from ..errors import SoftmoaError
from ..fsutil import atomic_write_json, atomic_write_text
from .configs import point_config, with_max_length
from .plot import plot_facts, plot_results
from .points import POINT_FILE, PointResult, point_dir, read_point, saved_max_length
from .studies import Study
from .summary import describe_base, results_csv, results_markdown, summarize

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
        raise SoftmoaError(f"`seeds` must be at least 1, not {seeds}")
    train = train or _finetune
    measure = measure or measure_point
    from ..petl.methods import with_backbone_defaults
    from ..petl.widths import PAPER_DIM

    for value in values:  # a bad value is an error before torch loads
        point_config(base, study, value, 0, PAPER_DIM)
    from ..train.backbone import backbone_dim  # torch

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
    from ..train import finetune

    return finetune(config, run_dir)[1]


def measure_point(config: RunConfig, run_dir: Path) -> dict:
    """Cost figures of a finished run: trainable parameters and FLOPs of its (first) model,
    mean epoch time from its log, peak memory of one training step at its batch size."""
    from ..accounting import cost
    from ..bench import step_peak_memory
    from ..devices import resolve_device
    from ..runs.run import Run

    run = Run.open(run_dir)
    model, features = run.model(), run.adapter().features
    spent = cost(model)
    seconds = [row.seconds for record in run.metrics.folds.values() for row in record.epochs]
    peak = step_peak_memory(model, config.training.batch_size, features.window_shape,
                            resolve_device(config.training.device))
    return {"trainable_params": spent.trainable_params, "flops": spent.flops,
            "epoch_seconds": sum(seconds) / len(seconds), "peak_memory_mib": peak / 2 ** 20}


def write_results(study: Study, results: list[PointResult], out: Path, context: str = "",
                  facts: dict | None = None) -> list[dict]:
    """``results.csv`` (one row per value), ``results.md`` and ``plot.png`` in ``out``;
    ``context`` (e.g. ``describe_base``) heads the Markdown and the plot; ``facts``
    (``plot_facts``) give the plot its chance line and the worth of one test clip."""
    rows = summarize(results)
    atomic_write_text(out / "results.csv", results_csv(rows))
    atomic_write_text(out / "results.md", results_markdown(study, rows, context))
    plot_results(study, rows, out / "plot.png", context, facts)
    return rows
