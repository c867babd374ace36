"""Output piped or logged stays whole: every command in-process through CliRunner (its output is
not a terminal) at COLUMNS=80, as CI logs and ``| tee`` see it. Names and paths are never cut,
tables fit or fold instead of clipping, ``mean ± std`` stays on one line, and training progress
is one plain line per epoch with no bar fragments. Multi-label runs (on tiny mixtures the test
writes, ``helpers.write_mixtures``): finetune prints validation mAP per epoch and a table of
mAP, micro/macro-F1 and d′; evaluate prints per-class AP and F1 and writes no confusion matrix;
predict marks the labels at or above their thresholds; ablate scores its points by test mAP,
with the chance mAP on its plot."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import MIXTURE_SOURCES, TINY, run, run_ok, table_lines, toy_table, write_csv, write_mixtures, write_wav

from softmoa_cli.cli import console


BAR = ("━", "╸", "╺")  # rich progress bar characters
pytestmark = pytest.mark.usefixtures("columns_80")


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """Two finished runs on the toy features (the data set opener patched for the module): a
    Soft-MoA run of 8 experts on one split, a 3-fold linear run; each in a folder whose path is
    longer than the terminal; with the result of each finetune command."""
    from softmoa_cli.engine.data import cache_open
    from softmoa_cli.engine.train import planning

    base = tmp_path_factory.mktemp("output")
    deep = base / "a-folder-with-a-rather-long-name" / "and-another-one-below-it" / "runs"
    preset = base / "tiny.yaml"
    preset.write_text(f"model: {{checkpoint: random, random: {TINY | {'depth': 1}}}}\n"
                      "training: {epochs: 2, batch_size: 16, resume_every: 4, seed: 3, threads: 1}\n")
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "80")
        patch.setattr(planning, "resolve", lambda name, seed=0: None)  # "toy" is no registered data set
        for name, folds, method in (("soft", 0, ["--method", "soft", "--experts", "8"]),
                                    ("kfold", 3, ["--method", "linear"])):
            patch.setattr(cache_open, "open_dataset", lambda data, message, front_end=None, folds=folds: toy_table(n=96, folds=folds))
            results[name] = run("finetune", "--dataset", "toy", "--preset", preset, *method,
                                "--out", deep / f"toy-{name}-20261128-120000")
            assert results[name].exit_code == 0, results[name].output
    return deep, results



def test_the_consoles_take_the_width_of_each_invocation(monkeypatch):
    assert console.out.width == console.err.width == 80
    monkeypatch.setenv("COLUMNS", "123")
    assert console.out.width == console.err.width == 123
    assert not console.out.is_terminal  # pytest captures: what a pipe or a CI log gets


def test_download_listing_keeps_every_name_and_source_whole():
    from softmoa_cli.engine.data.registry import datasets

    result = run_ok("download")
    assert "…" not in result.output
    for name in datasets():
        assert re.search(rf"^ {re.escape(name)} ", result.stdout, re.M), (name, result.stdout)  # in its cell, whole
        spec = datasets().get(name)
        if spec.source:  # 80 columns leave no room for the addresses in the table: they follow it
            assert f"{name} · source: {spec.source.url}" in result.stdout.splitlines(), result.stdout
    assert "speechcommands" in result.stdout and "synth-upstream" in result.stdout
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout


def test_bench_shows_every_method_label_whole(tmp_path):
    from softmoa_cli.cli.commands.bench import DEFAULT_METHODS
    from softmoa_cli.engine.bench import split_specs

    result = run_ok("bench", "--dim", 32, "--depth", 1, "--heads", 2, "--mlp-dim", 64, "--frames", 48,
                    "--batch", 2, "--warmup", 0, "--repeats", 1, "--threads", 1)
    assert "…" not in result.output
    for label in split_specs(DEFAULT_METHODS):
        assert label in result.stdout, (label, result.stdout)
    for header in ("step ms", "peak MiB", "trainable"):
        assert header in result.stdout
    assert not any(mark in result.stderr for mark in BAR), result.stderr
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout


def test_finetune_prints_the_run_path_whole_and_one_line_per_epoch(toy_runs):
    deep, results = toy_runs
    for name, epochs in (("soft", ["epoch 1/2", "epoch 2/2"]),
                         ("kfold", [f"fold {k}/3 · epoch {e}/2" for k in (1, 2, 3) for e in (1, 2)])):
        result = results[name]
        assert f"run: {deep / f'toy-{name}-20261128-120000'}" in result.stdout.splitlines(), result.stdout
        assert "…" not in result.output and "adapter" in result.stdout
        assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout
        assert not any(mark in result.stderr for mark in BAR), result.stderr  # no live bar, no fragment
        lines = [line for line in result.stderr.splitlines() if "train loss" in line]
        assert len(lines) == len(epochs), result.stderr
        for line, epoch in zip(lines, epochs):
            assert line.strip().startswith(epoch) and "valid loss" in line and " lr " in line, line
            assert "samples/s" in line and "elapsed" in line, line
        assert all(line.strip() for line in result.stderr.splitlines()), result.stderr  # no blank leftovers
    spread = [line for line in results["kfold"].stdout.splitlines() if "over 3 folds" in line]
    assert len(spread) == 1 and re.search(r"\d\.\d{4} ± \d\.\d{4}", spread[0]), results["kfold"].stdout


def test_evaluate_prints_its_picture_path_whole(toy_runs, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    deep, _ = toy_runs
    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message, front_end=None: toy_table(n=96, folds=3))
    folder = deep / "toy-kfold-20261128-120000"
    result = run_ok("evaluate", folder)
    assert f"confusion matrix: {folder / 'confusion-test.png'}" in result.stdout.splitlines(), result.stdout
    assert re.search(r"^test accuracy \d\.\d{4} ± \d\.\d{4}", result.stdout, re.M), result.stdout
    assert "…" not in result.output and "class3" in result.stdout


def test_analyze_keeps_its_columns_whole_at_8_experts(toy_runs, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    deep, _ = toy_runs
    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message, front_end=None: toy_table(n=80))
    result = run_ok("analyze", deep / "toy-soft-20261128-120000", "--out", deep / "analysis")
    assert "…" not in result.output
    header = next(line for line in result.stdout.splitlines() if "┃" in line)
    assert [cell.strip() for cell in header.split("┃")] == ["layer", *(f"e{i}" for i in range(8))], header
    assert re.search(r"^ blocks\.0\.attn .*│ \d\.\d{3} $", result.stdout, re.M), result.stdout
    assert re.search(r"^blocks\.0\.attn · entropy: \d\.\d{3} · min/max: \d\.\d{3}$", result.stdout, re.M)
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout


def test_ablate_keeps_mean_and_std_on_one_line(tmp_path, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message, front_end=None: toy_table(n=80))
    result = run_ok("ablate", "slots", "--dataset", "toy", "--values", "1,2", "--seeds", 2, "--epochs", 1,
                    "--batch-size", 16, "--checkpoint", "random", "--threads", 1,
                    "--set", "model.random={dim: 32, depth: 1, heads: 2, mlp_dim: 64}", "--out", tmp_path / "study")
    rows = [line for line in result.stdout.splitlines() if "±" in line and "│" in line]
    assert len(rows) == 2, result.stdout
    assert all(re.search(r"\d+\.\d\d ± \d+\.\d\d", row) for row in rows), result.stdout
    assert "…" not in result.output
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout
    assert len([line for line in result.stderr.splitlines() if "train loss" in line]) == 4  # 2 values x 2 seeds
    assert not any(mark in result.stderr for mark in BAR), result.stderr


def test_prepare_leaves_no_bar_or_blank_line(tmp_path):
    for label in ("dog_barking", "rain"):
        for k in range(3):
            write_wav(tmp_path / "sounds" / label / f"{label}-{k}.wav", seed=k)
    result = run_ok("prepare", tmp_path / "sounds", "--workers", 1, "--home", tmp_path / "home")
    assert all(line.strip() for line in result.output.splitlines()), result.output
    assert not any(mark in result.output for mark in BAR), result.output
    cached = result.stdout.splitlines()
    assert len(cached) == 1 and "6 clips cached" in cached[0] and str(tmp_path / "home") in cached[0], result.stdout


def test_the_default_comparison_lists_long_run_paths_whole(capsys):
    from softmoa_cli.cli.commands.finetune import show_comparison

    root = Path("/tmp/a-rather-long-home-folder/projects/audio-experiments/runs/offline-default-20261128-120000")

    def metrics(method):
        from softmoa_cli.engine.runs.results import FoldRecord, FoldResult, RunMetrics
        from softmoa_cli.engine.task import SINGLE

        test = FoldResult(None, 3, 0.5, {"accuracy": 0.4, "macro_f1": 0.3}, 41_612, 93.0, 4, 40, False, 8192)
        return RunMetrics("synth", method, SINGLE, {"all": FoldRecord([], test)})

    show_comparison([(root / "adapter", metrics("adapter")), (root / "soft", metrics("soft"))])
    printed = capsys.readouterr().out
    assert "…" not in printed
    for method in ("adapter", "soft"):
        assert f"run ({method}): {root / method}" in printed.splitlines(), printed
    assert all(len(line) <= 80 for line in table_lines(printed)), printed


@pytest.mark.parametrize("columns", [80, 40])
def test_a_table_too_wide_loses_optional_columns_then_stacks(columns, monkeypatch, capsys):
    from softmoa_cli.cli.console import Column, show_table

    monkeypatch.setenv("COLUMNS", str(columns))
    names = ["soft:experts=7,slots=1,reduction_rate=128", "adapter:reduction_rate=64"]
    rows = [[name, "12.5", "1.044", "4,646", "https://example.org/a/rather/long/address/of/a/file.tar.gz"]
            for name in names]
    show_table([Column("method", "left", whole=True), Column("step ms"), Column("step/ref"), Column("trainable"),
                Column("source", "left", whole=True, optional=True)], rows, "costs")
    printed = capsys.readouterr().out
    assert "…" not in printed
    for name in names:
        assert name in printed and f"{name} · source: https://example.org/" in printed or f"method: {name}" in printed
    assert printed.count("https://example.org/a/rather/long/address/of/a/file.tar.gz") == 2
    assert all(len(line) <= columns for line in table_lines(printed)), printed
    if columns == 40:  # stacked: every value beside its header
        assert not table_lines(printed) and "  step ms: 12.5 · step/ref: 1.044" in printed, printed


def test_advice_is_said_once_and_only_where_it_can_be_acted_on(tmp_path, monkeypatch):
    """A study of two runs on a user's folder without a backbone named: the derived max_length
    and the AudioSet advice once each; evaluate on one of its runs says neither."""
    from helpers import write_wav

    for c, name in enumerate(("low", "high")):
        for k in range(6):
            write_wav(tmp_path / "mine" / name / f"{k}.wav", seconds=0.2, seed=10 * c + k)
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    study = run_ok("ablate", "slots", "--dataset", tmp_path / "mine", "--values", "1,2", "--epochs", 1,
                   "--batch-size", 4, "--threads", 1, "--out", tmp_path / "study")
    said = " ".join(study.stderr.split())
    assert said.count("max_length 20 frames (0.20 s) from the clip durations") == 1, study.stderr
    assert said.count("is not in the local Hugging Face cache") == 1, study.stderr
    assert said.count("backbone: embedded AST") == 2  # each run says its backbone
    evaluated = run_ok("evaluate", tmp_path / "study" / "runs" / "2-seed0")
    assert "max_length" not in evaluated.stderr and "Hugging Face cache" not in evaluated.stderr


def test_home_and_runs_hold_for_every_command_that_reads_them(tmp_path, monkeypatch):
    """Runs go to --runs and are found there (the error says where it looked); --home points
    evaluate at the caches of another home; neither outlives its command."""
    import os

    from helpers import write_wav

    for c, name in enumerate(("low", "high")):
        for k in range(5):
            write_wav(tmp_path / "mine" / name / f"{k}.wav", seconds=0.2, seed=10 * c + k)
    monkeypatch.delenv("SOFTMOA_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    home, runs = tmp_path / "home", tmp_path / "elsewhere" / "runs"
    run_ok("finetune", "-d", tmp_path / "mine", "-m", "linear", "--checkpoint", "embedded", "--epochs", 1,
           "--batch-size", 4, "--home", home, "--runs", runs)
    assert len(list(runs.glob("mine-linear-*"))) == 1 and not (tmp_path / "runs").exists()
    assert (home / "cache").is_dir() and os.environ["SOFTMOA_HOME"] != str(home)
    missing = run("evaluate")
    assert missing.exit_code == 2 and f"no finished run under {tmp_path / 'runs'} (runs/ of the current folder" \
        in " ".join(missing.stderr.split())
    found = run_ok("evaluate", "--runs", runs, "--home", home, "--json")
    assert found.stderr.splitlines()[0].startswith(f"run: {runs}")
    session = Path(os.environ["SOFTMOA_HOME"])  # evaluate read the cache of --home, made none here
    assert not list(session.glob("cache/mine-*")) and len(list(home.glob("cache/mine-*/L*"))) == 1
    monkeypatch.setenv("SOFTMOA_RUNS", str(runs))
    assert run("predict", tmp_path / "mine" / "low" / "0.wav").exit_code == 0


LABELS = sorted(MIXTURE_SOURCES)


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
