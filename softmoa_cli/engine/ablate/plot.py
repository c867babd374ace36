"""The ablation figure, ``plot.png``: the test score (%) against the swept value with its spread
over seeds, the chance level, and trainable parameters as bars."""

from __future__ import annotations

from pathlib import Path

from ..errors import SoftmoaError
from .studies import Study
from .summary import row_metric


def plot_facts(run_dir: Path) -> dict:
    """What a finished run says about its test split, for the plot: its ``task``, ``classes`` (its
    labels), ``clips`` (test clips of its smallest fold) and ``chance`` (the task's chance score
    and its words; None when the task needs the run's data and it cannot be opened)."""
    from ..data.cache_open import open_dataset
    from ..data.splits import plan_splits
    from ..runs.run import Run

    run = Run.open(run_dir)
    task, classes = run.metrics.task, len(run.adapter().labels)

    def test_labels() -> list | None:  # each fold's test labels, read from the run's data (its cache)
        try:
            table = open_dataset(run.config.data, front_end=run.adapter().features).as_task(task)
            return [table.labels[plan.test] for plan in plan_splits(table, run.config.data)]
        except (SoftmoaError, OSError, ValueError):
            return None

    clips = min(int(result.scores["clips"]) for result in run.metrics.results)
    return {"task": task, "classes": classes, "clips": clips, "chance": task.chance(classes, test_labels)}


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
