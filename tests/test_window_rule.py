"""One score per clip whoever asks: evaluate (from the feature cache) and predict (from the
audio files) score clips longer than ``max_length`` by the same window rule."""

from __future__ import annotations

import csv
import shutil

import numpy as np

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.data.cache_open import open_cache
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
    assert report["summary"]["accuracy_mean"] == metrics.to_dict()["folds"]["all"]["test"]["accuracy"]
    predictor = predictor_for(run=run)
    confusion = np.zeros((3, 3), dtype=int)
    for i in test:
        (label, _), = predictor.predict_file(root / cache.paths[i], top_k=1)
        confusion[cache.labels[i], cache.label_names.index(label)] += 1
    assert confusion.tolist() == report["confusion"]


def test_scoring_whole_clips_runs_at_most_a_batch_of_windows_at_once():
    """An evaluation batch of long clips (here 50 windows each) never holds more than the batch's
    windows in memory or in one forward, and scores the clips as the unbounded mean does."""
    import numpy as np
    import torch

    from helpers import TINY, toy_table
    from softmoa_cli.engine.models.ast import AST, ASTConfig
    from softmoa_cli.engine.distributed import World
    from softmoa_cli.engine.devices import Precision
    from softmoa_cli.engine.scoring.evaluation import score_indices

    table = toy_table(n=8)
    rng = np.random.default_rng(1)
    table.windows = np.array([50, 1, 50, 1, 1, 1, 1, 1])
    table.extra = rng.normal(size=(98, 48, 32)).astype(np.float16)
    torch.manual_seed(0)
    model = AST(ASTConfig(**TINY, num_mel_bins=32, max_length=48, num_classes=4)).eval()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    scored = score_indices(model, table, np.arange(8), 8, World(), Precision("fp32", torch.device("cpu")))
    assert sum(seen) == 106 and max(seen) == 8
    with torch.no_grad():
        for clip in (0, 2, 5):  # the reference: every window of the clip at once, probabilities averaged
            first = 0 if clip == 0 else 49
            windows = [table.features[clip]] + ([table.extra[first + k] for k in range(49)] if clip in (0, 2) else [])
            probs = model(torch.from_numpy(np.stack(windows).astype(np.float32))).double().softmax(-1).mean(0)
            assert torch.allclose(scored.probabilities[clip], probs, atol=1e-12)
