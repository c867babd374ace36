"""Multi-label runs through the CLI: finetune prints validation mAP per
epoch and a results table of mAP, micro/macro-F1 and d′; evaluate prints per-class AP and F1
and writes no confusion matrix; predict marks the labels at or above their thresholds
(``--threshold`` moves them; a single-label run refuses it); ``ablate`` on multi-label data
scores its points by test mAP, with the chance mAP on its plot. Everything on tiny mixtures
the test writes (``helpers.write_mixtures``), piped at 80 columns."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import MIXTURE_SOURCES, run, run_ok, table_lines, write_csv, write_mixtures

LABELS = sorted(MIXTURE_SOURCES)
pytestmark = pytest.mark.usefixtures("columns_80")


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory):
    """A manifest of 60 mixtures (36 train, 12 valid, 12 test), a single-label manifest of the
    same clips (each clip's first label), a tiny preset, and a finished multi-label run made
    by ``softmoa finetune`` (with its result), all in a SOFTMOA_HOME of the module's own."""
    base = tmp_path_factory.mktemp("multilabel-cli")
    manifest = write_mixtures(base / "data", clips=60)
    with open(manifest) as handle:
        rows = list(csv.DictReader(handle))
    single = base / "data" / "single.csv"
    write_csv(single, ["path", "label", "split"], [[r["path"], r["labels"].split(";")[0], r["split"]] for r in rows])
    preset = base / "tiny.yaml"
    preset.write_text("data: {max_length: 50}\n"
                      "model: {checkpoint: random, random: {dim: 32, depth: 1, heads: 2, mlp_dim: 64}}\n"
                      "training: {epochs: 2, batch_size: 12, seed: 0, device: cpu, threads: 1}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTMOA_HOME", str(base / "home"))
        patch.setenv("COLUMNS", "80")
        result = run("finetune", "--dataset", manifest, "--preset", preset, "--method", "soft", "--experts", 2,
                     "--out", base / "runs" / "multi")
        assert result.exit_code == 0, result.output
        yield {"base": base, "manifest": manifest, "single": single, "preset": preset, "rows": rows,
               "run": base / "runs" / "multi", "finetune": result}


@pytest.fixture
def home(mixtures, monkeypatch):
    monkeypatch.setenv("SOFTMOA_HOME", str(mixtures["base"] / "home"))
    return mixtures



def test_finetune_prints_map_per_epoch_and_a_results_table_of_map(mixtures):
    result = mixtures["finetune"]
    epochs = [line.strip() for line in result.stderr.splitlines() if "train loss" in line]
    assert [line.split(" · ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], result.stderr
    for line in epochs:
        assert re.search(r"train loss \d\.\d{4} top-1 hit \d\.\d{4} · valid loss \d\.\d{4} mAP \d\.\d{4} · lr ",
                         line), line
        assert " acc " not in line, line
    assert re.search(r"^  best epoch [12] \(valid mAP \d\.\d{4}\) → test mAP \d\.\d{4}$", result.stderr, re.M), \
        result.stderr
    header = next(line for line in result.stdout.splitlines() if "┃" in line)
    cells = [cell.strip() for cell in header.split("┃")]
    assert cells[:7] == ["fold", "best epoch", "valid mAP", "test mAP", "micro-F1", "macro-F1", "d′"], header
    metrics = json.loads((mixtures["run"] / "metrics.json").read_text())
    test = metrics["folds"]["all"]["test"]
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("all "))
    assert f"{test['mAP']:.4f}" in row and f"{test['valid_mAP']:.4f}" in row and f"{test['d_prime']:.3f}" in row
    assert "acc" not in result.stdout and "…" not in result.output
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout
    # At 80 columns the cost figures follow the table, whole.
    assert re.search(r"^all · trainable: [\d,]+ · adapter: [\d.]+ KiB · time: \d+ s$", result.stdout, re.M), \
        result.stdout
    assert f"run: {mixtures['run']}" in result.stdout.splitlines()


def test_evaluate_prints_per_class_ap_and_writes_no_confusion_matrix(home):
    folder = home["run"]
    result = run_ok("evaluate", folder)
    assert not list(folder.glob("confusion*")) and "confusion" not in result.output
    header = next(line for line in result.stdout.splitlines() if "┃" in line)
    assert [cell.strip() for cell in header.split("┃")] == ["label", "AP", "F1", "positives"], header
    tested = [r["labels"].split(";") for r in home["rows"] if r["split"] == "test"]
    for label in LABELS:
        positives = sum(label in names for names in tested)
        assert re.search(rf"^ {label} +│ (\d\.\d{{4}}|–) +│ (\d\.\d{{4}}|–) +│ +{positives} $", result.stdout, re.M), \
            (label, result.stdout)
    metrics = json.loads((folder / "metrics.json").read_text())["folds"]["all"]["test"]
    summary = [line for line in result.stdout.splitlines() if line.startswith("test mAP ")]
    assert summary == [f"test mAP {metrics['mAP']:.4f} · micro-F1 {metrics['micro_f1']:.4f} · macro-F1 "
                       f"{metrics['macro_f1']:.4f} · d′ {metrics['d_prime']:.3f}"], result.stdout
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout

    report = json.loads(run_ok("evaluate", folder, "--json", "--split", "valid").stdout)
    assert report["task"] == "multilabel" and "confusion" not in report and "confusion_png" not in report
    assert report["ap_png"] == str(folder / "ap-valid.png") and Path(report["ap_png"]).read_bytes()[:4] == b"\x89PNG"
    assert report["folds"][0]["mAP"] == pytest.approx(metrics["valid_mAP"], abs=1e-6)
    assert report["summary"]["mAP_mean"] == report["folds"][0]["mAP"]
    assert [row["label"] for row in report["per_class"]] == LABELS and not list(folder.glob("confusion*"))


def predicted(home, *options) -> tuple[list[dict], str]:
    """``predict`` on the 12 test clips of the run: its JSON and its table."""
    clips = [home["manifest"].parent / r["path"] for r in home["rows"] if r["split"] == "test"]
    as_json = json.loads(run_ok("predict", *clips, "--run", home["run"], "--json", *options).stdout)
    return as_json, run_ok("predict", *clips, "--run", home["run"], "-k", 2, *options).stdout


def test_predict_marks_the_labels_above_threshold(home):
    found, table = predicted(home)
    assert all(set(entry) == {"file", "predictions", "positive"} for entry in found)
    tuned = json.loads((home["run"] / "adapter.json").read_text())["thresholds"]
    for entry in found:  # each label's threshold beside its score: the run's tuned one
        for p in entry["predictions"] + entry["positive"]:
            assert p["threshold"] == pytest.approx(tuned[LABELS.index(p["label"])], abs=1e-6)
    marked = sum(len(entry["positive"]) for entry in found)
    assert marked > 0
    listed = [line for line in table.splitlines() if line.startswith("above threshold (")]
    assert len(listed) == len(found), table
    for entry, line in zip(found, listed):  # the whole list, beyond the top 2 the table shows
        positive = ", ".join(f"{p['label']} {p['score']:.4f}" for p in entry["positive"]) or "none"
        assert line == f"above threshold ({len(entry['positive'])}): {positive}", (line, entry)
    header = next(line for line in table.splitlines() if "┃" in line)
    assert [cell.strip() for cell in header.split("┃")] == ["label", "score", "threshold", "above"], header
    ticks = [line for line in table.splitlines() if "│" in line and line.rstrip().endswith("✓")]
    shown = sum(1 for entry in found for p in entry["predictions"][:2] if p["label"] in
                {q["label"] for q in entry["positive"]})
    assert len(ticks) == shown, table  # a ✓ beside each positive label among the top 2
    assert all(len(line) <= 80 for line in table_lines(table)), table

    strict, strict_table = predicted(home, "--threshold", 0.99)
    assert sum(len(entry["positive"]) for entry in strict) < marked
    assert all(p["score"] >= 0.99 for entry in strict for p in entry["positive"])
    assert strict_table.count("✓") < table.count("✓") or not table.count("✓")
    everything, _ = predicted(home, "--threshold", 0)
    assert all(len(entry["positive"]) == len(LABELS) for entry in everything)


def test_threshold_is_refused_for_a_single_label_run_and_out_of_range(home):
    single = home["base"] / "runs" / "single"
    run_ok("finetune", "--dataset", home["single"], "--preset", home["preset"], "--method", "linear", "--epochs", 1,
           "--out", single)
    clip = home["manifest"].parent / home["rows"][-1]["path"]
    for folder, threshold, message in ((single, 0.5, "single-label"), (home["run"], 1.5, "--threshold': Input should be less than or equal to 1")):
        result = run("predict", clip, "--run", folder, "--threshold", threshold)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    plain = json.loads(run_ok("predict", clip, "--run", single, "--json").stdout)[0]
    assert "positive" not in plain and len(plain["predictions"]) == len(LABELS)


def test_ablate_on_multilabel_data_scores_by_map(home):
    from softmoa_cli.engine.ablate.plot import plot_facts
    from softmoa_cli.engine.ablate.points import point_dir

    study = home["base"] / "study"
    result = run_ok("ablate", "slots", "--values", "1,2", "--seeds", 1, "--epochs", 1, "--dataset", home["manifest"],
                    "--preset", home["preset"], "--set", "method.experts=2", "--out", study)
    with open(study / "results.csv") as handle:
        saved = list(csv.DictReader(handle))
    assert [r["value"] for r in saved] == ["1", "2"] and "mAP_mean" in saved[0] and "accuracy_mean" not in saved[0]
    assert {r["metric"] for r in saved} == {"mAP"}
    for row, value in zip(saved, (1, 2)):
        metrics = json.loads((point_dir(study, value, 0) / "metrics.json").read_text())
        assert float(row["mAP_mean"]) == pytest.approx(metrics["summary"]["mAP_mean"])
        assert json.loads((point_dir(study, value, 0) / "point.json").read_text())["metric"] == "mAP"
    assert "test mAP % (mean ± std)" in (study / "results.md").read_text()
    assert (study / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert re.search(r"┃ +test mAP % ┃", result.stdout) and "accuracy" not in result.stdout, result.stdout
    rows = [line for line in result.stdout.splitlines() if "±" in line and "│" in line]
    assert len(rows) == 2 and all(re.search(r"\d+\.\d\d ± \d+\.\d\d", row) for row in rows), result.stdout
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout
    # The chance line: per label its share of the 12 test clips, averaged over the labels present.
    tested = [r["labels"].split(";") for r in home["rows"] if r["split"] == "test"]
    rates = [sum(label in names for names in tested) / len(tested) for label in LABELS]
    chance = float(np.mean([rate for rate in rates if rate > 0]))
    facts = plot_facts(point_dir(study, 1, 0))
    assert facts["chance"][0] == pytest.approx(chance) and facts["clips"] == 12 and facts["classes"] == len(LABELS)


def map_rows(seeds: int = 2):
    from softmoa_cli.engine.ablate.points import PointResult
    from softmoa_cli.engine.ablate.summary import summarize

    return summarize([PointResult(value, seed, 0.6 + 0.02 * value + 0.01 * seed, 1000 * value, 10 ** 9, 2.0, 50.0,
                                  metric="mAP") for value in (1, 2, 4) for seed in range(seeds)])


def test_a_multilabel_ablation_plot_shows_map_and_its_chance():
    from softmoa_cli.engine.ablate.plot import results_figure
    from softmoa_cli.engine.ablate.studies import STUDIES
    from softmoa_cli.engine.task import MULTI

    rows = map_rows()
    assert set(rows[0]) >= {"mAP_mean", "mAP_std"} and "accuracy_mean" not in rows[0]
    facts = {"task": MULTI, "classes": 5, "clips": 12, "chance": MULTI.chance(5, lambda: [np.array([[1, 0], [0, 1],
                                                                                                     [1, 1]])])}
    assert facts["chance"][0] == pytest.approx(2 / 3)
    facts["chance"] = (0.34, "chance mAP ≈ 34.0% (mean positive rate)")
    figure = results_figure(STUDIES["slots"], rows, "mixtures, 1 epochs, soft", facts)
    ax = next(ax for ax in figure.axes if ax.get_ylabel() == "test mAP (%)")
    flat = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1]
    assert [line.get_ydata()[0] for line in flat] == [pytest.approx(34.0)]  # not 1/5 = 20 %
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert any("chance mAP ≈ 34.0%" in text for text in legend) and not any("test clip" in text for text in legend)
    low, high = ax.get_ylim()
    assert 0 <= low <= 34 and high <= 100
    unknown = results_figure(STUDIES["slots"], rows, facts={"task": MULTI, "chance": None})  # not known: no line
    ax = next(ax for ax in unknown.axes if ax.get_ylabel() == "test mAP (%)")
    assert not [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1]
    assert any("chance mAP not known" in text.get_text() for text in unknown.legends[0].get_texts())


def test_a_kfold_multilabel_summary_and_a_label_without_positives(capsys):
    from softmoa_cli.cli.commands.evaluate import show_report
    from softmoa_cli.cli.commands.finetune import show_comparison, show_results
    from softmoa_cli.engine.runs.results import FoldRecord, FoldResult, RunMetrics
    from softmoa_cli.engine.task import MULTI

    scores = {"mAP": 0.7, "micro_f1": 0.6, "macro_f1": 0.55, "d_prime": 1.234, "clips": 12}
    folds = {str(k): FoldRecord([], FoldResult(k, 2, 0.71, scores | {"mAP": 0.69 + 0.01 * k}, 4_646, 3.0, 2, 10, False,
                                               20_480, "mAP")) for k in (1, 2, 3)}
    metrics = RunMetrics("mixtures", "soft", MULTI, folds)
    show_results(Path("/runs/mixtures-soft"), metrics)
    alone = {"all": FoldRecord([], FoldResult(None, 2, 0.71, scores, 4_646, 3.0, 2, 10, False, 20_480, "mAP"))}
    show_comparison([(Path("/runs/adapter"), RunMetrics("mixtures", "adapter", MULTI, alone)),
                     (Path("/runs/soft"), RunMetrics("mixtures", "soft", MULTI, alone))])
    rows = [{"fold": k, "mAP": 0.7, "micro_f1": 0.6, "macro_f1": 0.55, "d_prime": 1.2, "loss": 0.3, "clips": 12}
            for k in (1, 2, 3)]
    show_report({"folds": rows, "summary": {"mAP_mean": 0.7, "mAP_std": 0.01, "micro_f1_mean": 0.6,
                                            "micro_f1_std": 0.02, "macro_f1_mean": 0.55, "macro_f1_std": 0.03,
                                            "d_prime_mean": 1.234, "d_prime_std": 0.1},
                 "per_class": [{"label": "low", "ap": 0.9, "f1": 0.8, "support": 5},
                               {"label": "hiss", "ap": None, "f1": None, "support": 0}]}, MULTI, "test")
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert ("over 3 folds: mAP 0.7100 ± 0.0100 · micro-F1 0.6000 ± 0.0000 · macro-F1 0.5500 ± 0.0000 · "
            "d′ 1.234 ± 0.000") in lines, printed
    assert "test mAP 0.7000 ± 0.0100 · micro-F1 0.6000 ± 0.0200 · macro-F1 0.5500 ± 0.0300 · d′ 1.234 ± 0.100" \
        in lines, printed
    assert re.search(r"^ hiss +│ +– +│ +– +│ +0 $", printed, re.M), printed
    assert re.search(r"^ method +┃ test mAP ┃", printed, re.M), printed
    assert "accuracy" not in printed and "…" not in printed
    assert all(len(line) <= 80 for line in table_lines(printed)), printed


def test_the_live_step_view_says_top1_hit_for_multilabel(monkeypatch):
    from rich.console import Console

    from softmoa_cli.cli import progress
    from softmoa_cli.engine.task import MULTI, SINGLE
    from softmoa_cli.engine.train.progress import StepInfo

    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    monkeypatch.setattr(progress, "err", terminal)
    for multi, figure in ((True, "top-1 hit 0.625"), (False, "accuracy 0.625")):
        view_progress = progress.TrainingProgress()
        view = view_progress.__enter__()
        view.fold_start(None, 1, 2, 4)
        view.step(StepInfo(None, 1, 2, 1, 4, 0.5, 0.625, 1e-3, 100.0, 3.0, (MULTI if multi else SINGLE).hit))
        view_progress.progress.refresh()
        shown = terminal.file.getvalue()
        view_progress.__exit__(None, None, None)
        assert figure in shown and ("top-1 hit" in shown) == multi, shown
        terminal.file.seek(0)
        terminal.file.truncate()
