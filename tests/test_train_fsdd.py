"""End to end on real speech (FSDD, official split) with a small random AST on CPU."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from softmoa_cli.engine.classifier import Classifier
from softmoa_cli.engine.task import SINGLE
from softmoa_cli.config import load_config
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig, windows
from softmoa_cli.engine.evaluate import evaluate_run, save_confusion_png
from softmoa_cli.engine.predict import Predictor
from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.data.splits import plan_splits
from softmoa_cli.engine.data.table import FeatureTable
from helpers import load_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory, fsdd_recordings):
    """The 3,000 recordings copied to a temporary folder and their features (100 frames)."""
    folder = tmp_path_factory.mktemp("fsdd")
    shutil.copytree(fsdd_recordings, folder / "recordings")
    files = sorted((folder / "recordings").glob("*.wav"))
    config = FeatureConfig(max_length=100)
    clips = [windows(load_mono_16k(f), config).numpy() for f in files]  # [windows, 100, 128] each
    x = np.stack([clip[0] for clip in clips])
    extra = np.concatenate([clip[1:] for clip in clips])
    labels = np.array([int(f.name.split("_")[0]) for f in files])
    split = np.array(["test" if int(f.stem.split("_")[2]) < 5 else "train" for f in files], dtype=object)
    return files, FeatureTable("fsdd", x, labels, [str(d) for d in range(10)], split, np.zeros(len(files), int), config,
                               np.array([len(clip) for clip in clips]), extra)


def test_official_split(fsdd):
    _, table = fsdd
    plan, = plan_splits(table, load_config("fsdd-cpu").data)
    assert (len(plan.train), len(plan.valid), len(plan.test)) == (2430, 270, 300)


def test_short_run_is_well_above_chance_and_evaluate_and_predict_agree(fsdd, tmp_path):
    files, table = fsdd
    config = load_config("fsdd-cpu", {"method.name": "full", "training.lr": 2e-3, "training.epochs": 15, "model.checkpoint": "random",
                                      "model.random": {"dim": 64, "depth": 2, "heads": 2, "mlp_dim": 128}})
    run, metrics = finetune(config, tmp_path / "run", table=table)
    result = metrics.to_dict()["folds"]["all"]["test"]
    assert result["accuracy"] >= 0.6 and result["clips"] == 300  # chance: 0.1

    report = evaluate_run(run, "test", table=table)
    assert report["summary"]["accuracy_mean"] == result["accuracy"]
    assert [row["support"] for row in report["per_class"]] == [30] * 10
    png = save_confusion_png(report["confusion"], report["labels"], tmp_path / "confusion.png")
    assert png.read_bytes().startswith(b"\x89PNG")

    # predict with the run's model from the audio files scores each clip by the same window rule:
    # its top-1 over the test files is the run's test accuracy, to the clip.
    model, labels, feature_config = load_run(run)
    predictor = Predictor(Classifier(model, labels, SINGLE, feature_config))
    test = np.flatnonzero(table.split == "test")
    assert (table.windows[test] > 1).sum() >= 1  # test clips longer than one window (2 at 100 frames)
    predicted = [predictor.predict_file(files[j], top_k=1)[0][0] for j in test]
    correct = sum(p == str(table.labels[j]) for p, j in zip(predicted, test))
    assert correct == round(result["accuracy"] * len(test))
