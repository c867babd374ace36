"""Output piped or logged stays whole: every command in-process through CliRunner (its output is
not a terminal) at COLUMNS=80, as CI logs and ``| tee`` see it. Names and paths are never cut,
tables fit or fold instead of clipping, ``mean ± std`` stays on one line, and training progress
is one plain line per epoch with no bar fragments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import TINY, run, run_ok, table_lines, toy_table, write_wav

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
            patch.setattr(cache_open, "open_dataset", lambda data, message, folds=folds: toy_table(n=96, folds=folds))
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
    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message: toy_table(n=96, folds=3))
    folder = deep / "toy-kfold-20261128-120000"
    result = run_ok("evaluate", folder)
    assert f"confusion matrix: {folder / 'confusion-test.png'}" in result.stdout.splitlines(), result.stdout
    assert re.search(r"^test accuracy \d\.\d{4} ± \d\.\d{4}", result.stdout, re.M), result.stdout
    assert "…" not in result.output and "class3" in result.stdout


def test_analyze_keeps_its_columns_whole_at_8_experts(toy_runs, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    deep, _ = toy_runs
    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message: toy_table(n=80))
    result = run_ok("analyze", deep / "toy-soft-20261128-120000", "--out", deep / "analysis")
    assert "…" not in result.output
    header = next(line for line in result.stdout.splitlines() if "┃" in line)
    assert [cell.strip() for cell in header.split("┃")] == ["layer", *(f"e{i}" for i in range(8))], header
    assert re.search(r"^ blocks\.0\.attn .*│ \d\.\d{3} $", result.stdout, re.M), result.stdout
    assert re.search(r"^blocks\.0\.attn · entropy: \d\.\d{3} · min/max: \d\.\d{3}$", result.stdout, re.M)
    assert all(len(line) <= 80 for line in table_lines(result.stdout)), result.stdout


def test_ablate_keeps_mean_and_std_on_one_line(tmp_path, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message: toy_table(n=80))
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
