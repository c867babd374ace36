"""Pictures a person reads at a glance: the ablation plot, the confusion
matrix and the expert heatmap, checked on the matplotlib figures the tool saves."""

from __future__ import annotations


import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from softmoa_cli.engine.ablate.plot import plot_facts, plot_results, results_figure
from softmoa_cli.engine.ablate.points import PointResult
from softmoa_cli.engine.ablate.studies import STUDIES
from softmoa_cli.engine.ablate.summary import summarize
from softmoa_cli.engine.contribution import Contributions, contributions_figure, plot_contributions
from softmoa_cli.engine.evaluate import confusion_figure, save_confusion_png
from softmoa_cli.engine.task import SINGLE

PNG = b"\x89PNG\r\n\x1a\n"


def fits(figure) -> None:
    """Nothing drawn sticks out of the figure (a cut title or label)."""
    figure.canvas.draw()
    drawn, page = figure.get_tightbbox(), figure.bbox_inches
    assert drawn.x0 >= -0.01 and drawn.y0 >= -0.01, (drawn, page)
    assert drawn.x1 <= page.x1 + 0.01 and drawn.y1 <= page.y1 + 0.01, (drawn, page)


def only_axes(figure, ylabel: str):
    return next(ax for ax in figure.axes if ax.get_ylabel() == ylabel)


# --- the ablation plot ------------------------------------------------------------------------------


def slots_rows(accuracies=((0.430, 0.428, 0.432), (0.433, 0.431, 0.435), (0.436, 0.434, 0.438)), seeds=3):
    """A slots study: three values, ``seeds`` seeds each, accuracies 0.430-0.436 (spread 0.006)."""
    return summarize([PointResult(value, seed, accuracy, 1000 * value, 10 ** 9, 2.0, 50.0)
                      for value, row in zip((1, 2, 4), accuracies) for seed, accuracy in enumerate(row[:seeds])])


def test_ablation_plot_shows_error_bars_chance_and_an_honest_range(tmp_path):
    rows = slots_rows()
    figure = results_figure(STUDIES["slots"], rows, "toy, 3 epochs, soft: experts=8", facts(12, 180))
    ax = only_axes(figure, "test accuracy (%)")
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_yerr
    segments = bars[0].lines[2][0].get_segments()  # one vertical bar per value: mean - std .. mean + std
    for segment, row in zip(segments, rows):
        assert segment[1][1] - segment[0][1] == pytest.approx(2 * 100 * row["accuracy_std"])
    chance = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1
              and line.get_ydata()[0] == pytest.approx(100 / 12)]
    assert chance and chance[0].get_linestyle() == "--"
    low, high = ax.get_ylim()
    spread = 100 * (max(r["accuracy_mean"] for r in rows) - min(r["accuracy_mean"] for r in rows))
    assert spread == pytest.approx(0.6)
    assert high - low >= 10 and low <= 100 / 12 and 0 <= low and high <= 100  # one clip (0.56) cannot fill it
    title = ax.get_title()
    assert title.startswith("Ablation slots: ") and "3 seeds" in title and "toy" in title and "soft" in title
    assert ax.get_xlabel() == "slots"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert any("1/12" in text for text in legend) and any("std over 3 seeds" in text for text in legend)
    assert any("0.56 points" in text for text in legend)
    fits(figure)
    assert plot_results(STUDIES["slots"], rows, tmp_path / "plot.png", "toy", facts(12)).read_bytes()[:8] == PNG


def test_ablation_range_without_chance_and_at_the_top():
    # One seed, classes unknown: no error bars, said in the legend; still 10 points of range.
    rows = slots_rows(seeds=1)
    figure = results_figure(STUDIES["slots"], rows)
    ax = only_axes(figure, "test accuracy (%)")
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert any("1 seed" in text.get_text() for text in figure.legends[0].get_texts())
    low, high = ax.get_ylim()
    assert high - low >= 10 and "1 seed per point" in ax.get_title()
    # Near 100 %: the range stays inside 0..100 and keeps its span.
    rows = slots_rows(((0.99, 1.0, 0.995),) * 3)
    low, high = only_axes(results_figure(STUDIES["slots"], rows, facts=facts(2)), "test accuracy (%)").get_ylim()
    assert high == 100 and low <= 50 and high - low >= 10


def test_plot_facts_read_the_class_count_and_test_clips(toy_runs):
    found = plot_facts(toy_runs["soft"])  # the toy table: 4 classes, 40 test clips
    assert found["task"] is SINGLE and found["classes"] == 4 and found["clips"] == 40
    assert found["chance"] == (0.25, "chance: 1/4 = 25.0%")


def facts(classes: int, clips: int | None = None) -> dict:
    """What ``plot_facts`` gives for a single-label study of ``classes`` labels, ``clips`` test clips."""
    return {"task": SINGLE, "classes": classes, "clips": clips, "chance": SINGLE.chance(classes, None)}


# --- the confusion matrix ---------------------------------------------------------------------------


def test_confusion_title_has_the_accuracy_and_digit_labels_stand_upright(tmp_path):
    confusion = [[3, 1, 0, 0], [0, 4, 0, 0], [1, 0, 2, 1], [0, 0, 0, 4]]  # 13 of 16 right (81.2 %)
    figure = confusion_figure(confusion, ["0", "1", "2", "3"], "run · test")
    ax = only_axes(figure, "true")
    assert ax.get_title() == "run · test · accuracy 81.2% (13 / 16 clips)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
    cells = sorted(int(t.get_text()) for t in ax.texts)
    assert cells == sorted(v for row in confusion for v in row if v)  # counts in the cells
    fits(figure)
    figure = confusion_figure([[3, 1], [1, 3]], ["0", "1"])
    assert "accuracy 75.0% (6 / 8 clips)" in only_axes(figure, "true").get_title()
    png = save_confusion_png([[3, 1], [1, 3]], ["0", "1"], tmp_path / "confusion.png", "run")
    assert png.read_bytes()[:8] == PNG


def test_confusion_long_labels_are_turned_and_fit():
    labels = ["dog", "rooster", "chirping_birds", "vacuum_cleaner"]
    figure = confusion_figure(np.eye(4, dtype=int).tolist(), labels, "esc50 · test")
    ax = only_axes(figure, "true")
    assert "accuracy 100.0% (4 / 4 clips)" in ax.get_title()
    assert all(0 < t.get_rotation() <= 90 for t in ax.get_xticklabels())
    assert all(t.get_rotation() == 0 for t in ax.get_yticklabels())
    fits(figure)


# --- the expert heatmap -----------------------------------------------------------------------------


def test_expert_balance_panel_labels_its_layers(tmp_path):
    names = ["blocks.0.attn.adapter", "blocks.0.mlp.adapter", "blocks.1.attn.adapter"]
    shares = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]])
    result = Contributions("soft", names, shares)
    figure = contributions_figure(result)
    balance = next(ax for ax in figure.axes if ax.get_label() == "balance")
    heatmap = only_axes(figure, "layer")
    layers = ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn"]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == layers
    assert [t.get_text() for t in balance.get_yticklabels()] == layers
    assert list(balance.get_yticks()) == list(heatmap.get_yticks())  # the same order, row for row
    low, high = balance.get_ylim()
    assert low > high  # top to bottom, as the heatmap
    entropy = [bar.get_width() for bar in balance.patches[:3]]
    assert entropy == pytest.approx(list(result.normalized_entropy)) and entropy[1] == pytest.approx(1.0)
    assert "balance" in balance.get_xlabel() and balance.get_title()
    fits(figure)
    assert plot_contributions(result, tmp_path / "experts.png").read_bytes()[:8] == PNG
