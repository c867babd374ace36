"""One score per clip whoever asks: evaluate (from the feature cache) and predict (from the
audio files) score clips longer than ``max_length`` by the same window rule."""

from __future__ import annotations

import csv
import shutil

import numpy as np

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.data.cache import open_cache
from softmoa_cli.engine.evaluate import evaluate_run
from softmoa_cli.engine.predict import predictor_for
from softmoa_cli.engine.train import finetune


def test_predict_top1_over_the_test_files_equals_evaluate(tmp_path, fsdd_recordings):
    # Three digits of real speech at 30 frames (0.3 s): most clips span several windows.
    root = tmp_path / "digits"
    root.mkdir()
    rows = []
    for digit in ("1", "4", "8"):
        for k, source in enumerate(sorted(fsdd_recordings.glob(f"{digit}_*_*.wav"))[:20]):
            shutil.copy(source, root / source.name)
            rows.append([source.name, digit, "train" if k < 10 else "valid" if k < 12 else "test"])
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "label", "split"], *rows])
    config = build_config({
        "data": {"dataset": str(root / "labels.csv"), "max_length": 30},
        "model": {"checkpoint": "random", "random": {"dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64}},
        "method": {"name": "adapter"}, "training": {"epochs": 2, "batch_size": 8, "lr": 3e-3}})
    run, metrics = finetune(config, tmp_path / "run")

    cache = open_cache(str(root / "labels.csv"), max_length=30)
    test = [i for i in range(len(cache)) if cache.split[i] == "test"]
    assert len(test) == 24 and (cache.windows[test] > 1).sum() >= 20

    report = evaluate_run(run, "test")
    assert report["summary"]["accuracy_mean"] == metrics["folds"]["all"]["test"]["accuracy"]
    predictor, _ = predictor_for(run=run)
    confusion = np.zeros((3, 3), dtype=int)
    for i in test:
        (label, _), = predictor.predict_file(root / cache.paths[i], top_k=1)
        confusion[cache.labels[i], cache.label_names.index(label)] += 1
    assert confusion.tolist() == report["confusion"]
