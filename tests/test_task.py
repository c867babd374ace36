"""The tasks (engine/task.py) through the engine, the multi-label one end to end on clips the test
writes: mixtures of one to three of five known sounds (four tones and a band of noise) listed
with their label sets. Training uses BCE and picks the best epoch by validation mAP; the
thresholds tuned on the validation clips are saved with the adapter; evaluate and predict agree
with the run; resume and DDP keep working. A single-label table trained with ``task:
multilabel`` takes the same path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from softmoa_cli.engine.task import MULTI
from helpers import MIXTURE_SOURCES, Kill, KillAt, _comparable, toy_config, toy_table, write_mixtures

from softmoa_cli.engine.config import build_config, dump_config
from softmoa_cli.engine.data.cache_open import open_dataset
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.evaluate import evaluate_run
from softmoa_cli.engine.runs.files import ADAPTER_WEIGHTS
from helpers import adapter_task
from softmoa_cli.engine.predict import predictor_for
from softmoa_cli.engine.train import finetune
from helpers import load_run
from softmoa_cli.engine.distributed import World
from softmoa_cli.engine.devices import Precision
from softmoa_cli.engine.scoring.evaluation import score_indices

CLIPS = 160  # 60 % train, 20 % valid, 20 % test
TINY_AST = {"dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64}


def mixture_config(manifest: Path, method: str = "soft", **training):
    """A tiny random AST (one block, 32 wide) on 0.5 s windows, 8 epochs at batch 16."""
    return build_config({"data": {"dataset": str(manifest), "max_length": 50},
                         "model": {"checkpoint": "random", "random": TINY_AST}, "method": {"name": method},
                         "training": {"epochs": 8, "batch_size": 16, "seed": 0, "device": "cpu"} | training})


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory) -> tuple[Path, object]:
    """The manifest and its multi-label feature table (prepared in the session's SOFTMOA_HOME)."""
    manifest = write_mixtures(tmp_path_factory.mktemp("mixtures"), CLIPS)
    table = open_dataset(mixture_config(manifest).data)
    assert (table.task is MULTI) and table.label_names == sorted(MIXTURE_SOURCES) and len(table) == CLIPS
    return manifest, table


@pytest.mark.parametrize("method", ["soft", "adapter", "lora"])
def test_a_multilabel_run_learns_well_above_chance(tmp_path, mixtures, method):
    manifest, table = mixtures
    run, metrics = finetune(mixture_config(manifest, method), tmp_path / "run", table=table)
    fold = metrics.to_dict()["folds"]["all"]
    result, epochs = fold["test"], fold["epochs"]
    # Chance: scores that ignore the audio rank a label's clips at random, AP = its positive rate.
    chance = float(table.labels[table.split == "test"].mean(axis=0).mean())
    assert 0.25 < chance < 0.45 and result["clips"] == 32
    assert result["mAP"] >= chance + 0.25, (result["mAP"], chance)  # measured 0.70 (lora) to 0.75 (soft) against 0.34
    assert result["d_prime"] > 0.5 and 0 < result["micro_f1"] <= 1 and 0 < result["macro_f1"] <= 1
    best = max(range(len(epochs)), key=lambda i: (epochs[i]["valid_mAP"], -i))
    assert result["best_epoch"] == best + 1 and result["valid_mAP"] == epochs[best]["valid_mAP"]
    assert all("valid_accuracy" not in e and 0 <= e["train_accuracy"] <= 1 for e in epochs)
    assert metrics.to_dict()["task"] == "multilabel" and metrics.to_dict()["summary"]["mAP_mean"] == result["mAP"]
    assert {"mAP_std", "micro_f1_mean", "macro_f1_mean", "d_prime_mean"} <= set(metrics.to_dict()["summary"])
    multi, thresholds = adapter_task(run)
    assert multi and len(thresholds) == 5 and all(0 <= t <= 1 for t in thresholds)
    with open(run / "log.csv") as handle:
        log = list(csv.DictReader(handle))
    assert len(log) == 8 and float(log[best]["valid_mAP"]) == pytest.approx(result["valid_mAP"], abs=1e-6)


def test_evaluate_and_predict_agree_with_the_run(tmp_path, mixtures):
    manifest, table = mixtures
    run, metrics = finetune(mixture_config(manifest, epochs=4), tmp_path / "run", table=table)
    result = metrics.to_dict()["folds"]["all"]["test"]
    report = evaluate_run(run, "test", table=table)
    assert report["task"] == "multilabel" and "confusion" not in report
    fold, = report["folds"]
    for name in ("mAP", "micro_f1", "macro_f1", "d_prime", "loss", "clips"):
        assert fold[name] == result[name], name
    assert report["summary"]["mAP_mean"] == metrics.to_dict()["summary"]["mAP_mean"]
    rows = report["per_class"]
    assert [r["label"] for r in rows] == table.label_names
    assert [r["support"] for r in rows] == table.labels[table.split == "test"].sum(axis=0).tolist()
    assert np.mean([r["ap"] for r in rows]) == pytest.approx(result["mAP"])
    assert evaluate_run(run, "valid", table=table)["folds"][0]["mAP"] == result["valid_mAP"]

    # predict: sigmoid scores, the labels at or above the run's thresholds marked, as the run counted them.
    predictor = predictor_for(run=run)
    description = predictor.classifier.description
    _, thresholds = adapter_task(run)
    assert (predictor.task is MULTI) and "multi-label" in description
    test = np.flatnonzero(table.split == "test")
    found = [predictor.predict(manifest.parent / table.paths[i], top_k=5) for i in test]
    truth = table.labels[test].astype(bool)
    marked = np.array([[label in dict(p.positive) for label in table.label_names] for p in found])
    tp, wrong = (marked & truth).sum(), (marked ^ truth).sum()
    assert 2 * tp / (2 * tp + wrong) == pytest.approx(result["micro_f1"])
    first = found[0]
    scores = dict(first.predictions)
    assert len(scores) == 5 and not np.isclose(sum(scores.values()), 1.0)  # independent sigmoids
    assert [label for label, _ in first.positive] == [label for label, s in first.predictions
                                                     if s >= thresholds[table.label_names.index(label)] - 1e-6]
    assert first.to_dict()["positive"] == [{"label": l, "score": s,
                                            "threshold": pytest.approx(thresholds[table.label_names.index(l)])}
                                           for l, s in first.positive]
    everything = predictor_for(run=run, threshold=0.0)
    nothing = predictor_for(run=run, threshold=1.0)
    path = manifest.parent / table.paths[test[0]]
    assert len(everything.predict(path).positive) == 5 and nothing.predict(path).positive == []


def test_resume_after_a_kill_reproduces_a_multilabel_run(tmp_path, mixtures):
    manifest, table = mixtures
    config = mixture_config(manifest, epochs=2, resume_every=2)  # 6 steps an epoch
    _, straight = finetune(config, tmp_path / "straight", table=table)
    with pytest.raises(Kill):
        finetune(config, tmp_path / "killed", callback=KillAt(9), table=table)  # epoch 2, after its step 2 checkpoint
    assert (tmp_path / "killed" / "state.pt").exists() and not (tmp_path / "killed" / ADAPTER_WEIGHTS).exists()
    _, resumed = finetune(config, tmp_path / "killed", table=table)
    assert _comparable(resumed) == _comparable(straight)
    assert adapter_task(tmp_path / "killed") == adapter_task(tmp_path / "straight")


def test_the_multilabel_task_on_single_label_data(tmp_path):
    table = toy_table()
    run, metrics = finetune(toy_config("soft", data={"task": "multilabel"}, epochs=2), tmp_path / "run", table=table)
    result = metrics.to_dict()["folds"]["all"]["test"]
    assert metrics.to_dict()["task"] == "multilabel" and result["mAP"] > 0.5 and "accuracy" not in result  # chance 0.25
    assert evaluate_run(run, "test", table=table)["folds"][0]["mAP"] == result["mAP"]
    assert adapter_task(run)[0] and json.loads((run / "adapter.json").read_text())["task"] == "multilabel"
    # The same data single-label: unchanged keys, softmax, no thresholds.
    run, metrics = finetune(toy_config("soft", epochs=1), tmp_path / "single", table=table)
    assert metrics.to_dict()["task"] == "singlelabel" and adapter_task(run) == (False, None)
    assert (run / "log.csv").read_text().splitlines()[0] == \
        "fold,epoch,train_loss,train_accuracy,valid_loss,valid_accuracy,lr,seconds,data_wait"
    report = evaluate_run(run, "test", table=table)
    assert report["task"] == "singlelabel" and set(report["folds"][0]) == {"fold", "accuracy", "macro_f1", "loss",
                                                                           "clips"}
    with pytest.raises(SoftmoaError, match="single-label"):
        predictor_for(run=run, threshold=0.3)


def test_a_kfold_multilabel_run_summarises_over_folds(tmp_path):
    table = toy_table(n=100, folds=5)
    config = build_config({"data": {"dataset": "toy", "task": "multilabel"},
                           "model": {"checkpoint": "random", "random": TINY_AST},
                           "method": {"name": "linear"}, "training": {"epochs": 1, "batch_size": 20}})
    run, metrics = finetune(config, tmp_path / "run", table=table)
    maps = [fold["test"]["mAP"] for fold in metrics.to_dict()["folds"].values()]
    assert len(maps) == 5 and metrics.to_dict()["summary"]["mAP_mean"] == pytest.approx(np.mean(maps))
    assert metrics.to_dict()["summary"]["mAP_std"] == pytest.approx(np.std(maps, ddof=1))
    report = evaluate_run(run, "test", table=table)
    assert [f["mAP"] for f in report["folds"]] == maps and report["summary"]["mAP_std"] == metrics.to_dict()["summary"]["mAP_std"]
    assert [row["support"] for row in report["per_class"]] == [25] * 4  # every clip is tested once
    per_fold = []  # each fold's model on its own test clips: per-class rows
    for fold in range(1, 6):
        model, _, _ = load_run(run, fold)
        scored = score_indices(model, table.as_task(MULTI), np.flatnonzero(table.fold == fold), 64, World(),
                               Precision("fp32", torch.device("cpu")))
        per_fold.append(scored.metrics(per_class=True)["per_class"])
    for c, row in enumerate(report["per_class"]):  # AP per label: the mean over folds
        assert row["ap"] == pytest.approx(np.mean([rows[c]["ap"] for rows in per_fold]))


DDP_SCRIPT = """
import json, sys
from softmoa_cli.engine.config import read_config
from softmoa_cli.engine.train import finetune

run, metrics = finetune(read_config(sys.argv[1]), sys.argv[2])
if metrics:
    json.dump(metrics.to_dict(), open(sys.argv[3], "w"))
"""


@pytest.mark.slow  # starts torchrun
def test_two_gloo_processes_train_a_multilabel_run_like_one(tmp_path, mixtures):
    manifest, _ = mixtures
    script, config = tmp_path / "train.py", tmp_path / "config.yaml"
    script.write_text(DDP_SCRIPT)
    config.write_text(dump_config(mixture_config(manifest, epochs=2, threads=1)))
    found = {}
    for name, launcher in {"single": [sys.executable], "ddp": [sys.executable, "-m", "torch.distributed.run",
                                                                "--standalone", "--nproc-per-node=2"]}.items():
        out = tmp_path / f"{name}.json"
        done = subprocess.run([*launcher, str(script), str(config), str(tmp_path / name), str(out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        found[name] = json.loads(out.read_text())["folds"]["all"]
    one, two = found["single"], found["ddp"]
    for a, b in zip(one["epochs"], two["epochs"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
        assert b["valid_mAP"] == pytest.approx(a["valid_mAP"], abs=1e-6)
    for name in ("mAP", "micro_f1", "macro_f1", "d_prime", "loss"):
        assert two["test"][name] == pytest.approx(one["test"][name], abs=1e-5), name
    assert two["test"]["clips"] == one["test"]["clips"] == 32
    thresholds = [adapter_task(tmp_path / name)[1] for name in ("single", "ddp")]
    assert thresholds[1] == pytest.approx(thresholds[0], abs=1e-5)
