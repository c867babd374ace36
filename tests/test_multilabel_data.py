"""Multi-label data: a manifest's `labels` column of `;`-separated label sets becomes multi-hot
rows through the cache; clips with an empty set are reported as bad."""

from __future__ import annotations

import numpy as np
from softmoa_cli.engine.task import MULTI
from helpers import write_csv, write_wav

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.cache_open import open_dataset
from softmoa_cli.engine.data.custom import scan_manifest


def manifest(root):
    rows = []
    for k, (labels, split) in enumerate([("dog;rain", "train"), ("dog", "train"), ("rain; car", "train"),
                                         ("car", "valid"), ("", "train"), ("dog;car;rain", "test"), ("rain", "test")]):
        write_wav(root / "clips" / f"{k}.wav", seconds=0.3, seed=k)
        rows.append([f"clips/{k}.wav", labels, split])
    write_csv(root / "tags.csv", ["path", "labels", "split"], rows)
    return root / "tags.csv"


def test_label_sets_through_the_cache(tmp_path):
    path = manifest(tmp_path)
    clips = scan_manifest(path)
    assert (clips.task is MULTI) and clips.label_names == ["car", "dog", "rain"]
    assert clips.labels.tolist()[:3] == [[0, 1, 1], [0, 1, 0], [1, 0, 1]] and clips.label_text(2) == "car;rain"
    cache, _ = prepare_cache(path, home=tmp_path / "home", max_length=30)
    assert (cache.task is MULTI) and len(cache) == 6 and cache.listed == 7
    assert cache.bad == [("clips/4.wav", "no labels: give it at least one label in the labels column, or remove it")]
    assert cache.labels.dtype == np.uint8 and cache.labels.tolist()[4] == [1, 1, 1]
    x, y = cache.batch(np.array([4, 0]))
    assert x.shape == (2, 30, 128) and y.dtype.is_floating_point and y.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_a_single_label_set_as_multilabel_task(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    rows = []
    for k in range(6):
        write_wav(tmp_path / "a" / f"{k}.wav", seconds=0.2, seed=k)
        rows.append([f"a/{k}.wav", "xy"[k % 2], ["train", "valid", "test"][k // 2]])
    write_csv(tmp_path / "one.csv", ["path", "label", "split"], rows)
    config = build_config({"data": {"dataset": str(tmp_path / "one.csv"), "task": "multilabel", "max_length": 20}})
    table = open_dataset(config.data)
    assert (table.task is MULTI) and table.labels.tolist() == [[1, 0], [0, 1]] * 3
