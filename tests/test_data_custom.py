"""Users' own data (class folders, CSV/TSV manifests, a manifest's `labels` column of
`;`-separated label sets for multi-label data), bad clips, and the training loader."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run, write_csv, write_wav

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.data.augment import spec_augment
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.cache_open import open_cache, open_dataset
from softmoa_cli.engine.data.custom import scan_folder, scan_manifest
from softmoa_cli.engine.data.registry import resolve
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.task import MULTI


def class_folders(root, per_class=10, classes=("bird", "car", "wind")):
    for c, name in enumerate(classes):
        for k in range(per_class):
            write_wav(root / name / f"{name}_{k}.wav", seconds=0.2, seed=c * 100 + k)
    return root


def test_folder_split_is_seeded_stratified_and_repeatable(tmp_path):
    root = class_folders(tmp_path / "mine")
    clips = scan_folder(root, seed=0)
    assert clips.label_names == ["bird", "car", "wind"] and len(clips.paths) == 30
    for label in range(3):  # 10 % test and 10 % valid of each class: one of each
        split = clips.split[clips.labels == label].tolist()
        assert (split.count("train"), split.count("valid"), split.count("test")) == (8, 1, 1)
    assert np.array_equal(scan_folder(root, seed=0).split, clips.split)
    assert not np.array_equal(scan_folder(root, seed=1).split, clips.split)


def test_manifests_csv_with_split_and_tsv_with_folds(tmp_path):
    for k in range(6):
        write_wav(tmp_path / "audio" / f"{k}.wav", seed=k)
    write_csv(tmp_path / "labels.csv", ["path", "label", "split"],
              [[f"audio/{k}.wav", "ab"[k % 2], ["train", "validation", "test"][k // 2]] for k in range(6)])
    clips = scan_manifest(tmp_path / "labels.csv")
    assert clips.split.tolist() == ["train", "train", "valid", "valid", "test", "test"]
    assert clips.labels.tolist() == [0, 1, 0, 1, 0, 1] and clips.fold.tolist() == [0] * 6
    (tmp_path / "folds.tsv").write_text("path\tlabel\tfold\n" + "".join(f"audio/{k}.wav\tx{k % 3}\t{k % 2 + 1}\n"
                                                                      for k in range(6)))
    clips = scan_manifest(tmp_path / "folds.tsv")
    assert clips.fold.tolist() == [1, 2, 1, 2, 1, 2] and set(clips.split.tolist()) == {"train"}
    write_csv(tmp_path / "bad.csv", ["path", "label", "split"], [["audio/0.wav", "a", "holdout"]])
    with pytest.raises(SoftmoaError, match="split 'holdout'.*use train, valid or test"):
        scan_manifest(tmp_path / "bad.csv")
    write_csv(tmp_path / "nolabel.csv", ["file", "class"], [["audio/0.wav", "a"]])
    with pytest.raises(SoftmoaError, match="missing column.*path, label"):
        scan_manifest(tmp_path / "nolabel.csv")


def test_bad_clips_are_reported_and_skipped(tmp_path):
    root = class_folders(tmp_path / "mine")
    (root / "car" / "corrupt.wav").write_bytes(b"RIFF\x00\x00junk that is not audio" * 10)
    (root / "car" / "empty.wav").write_bytes(b"")
    write_wav(tmp_path / "whole.wav", seconds=0.5)
    (root / "car" / "cut.wav").write_bytes((tmp_path / "whole.wav").read_bytes()[:100])  # head -c 100 whole.wav
    sf.write(str(root / "wind" / "nan.wav"), np.full(800, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    sf.write(str(root / "wind" / "silent.wav"), np.zeros(3200), 16_000)  # silent but valid: kept
    home = tmp_path / "home"
    strict = run("prepare", root, "--home", home, "-j", "1", "--max-length", "30")
    assert strict.exit_code == 2  # 4 of 35 clips bad is 11.4 %, above the default 1 %
    assert ("4 of 35 clips are bad (11.4%), above the accepted 1%" in strict.output
            and "accept them with --max-bad 11.5%" in strict.output and "Traceback" not in strict.output)
    assert "31 clips cached, 4 bad skipped" in strict.stdout
    typed = run("prepare", root, "--home", home, "-j", "1", "--max-length", "30", "--max-bad", "5")
    assert typed.exit_code == 2 and "--max-bad 5: give a share of the clips, such as 0.05 or 5%" in typed.output
    lenient = run("prepare", root, "--home", home, "-j", "1", "--max-length", "30", "--max-bad", "12%")
    assert lenient.exit_code == 0 and "already prepared" in lenient.stdout
    cache, _ = prepare_cache(root, max_length=30, home=home)
    report = cache.report.read_text().splitlines()
    assert report[0] == "path\treason" and len(report) == 5
    reasons = dict(line.split("\t") for line in report[1:])
    assert set(reasons) == {"car/corrupt.wav", "car/cut.wav", "car/empty.wav", "wind/nan.wav"}
    assert reasons["car/cut.wav"].startswith("truncated: its header declares 0.50 s of audio but the file holds 0.00 s")
    assert "empty file" in reasons["car/empty.wav"] and "NaN" in reasons["wind/nan.wav"]
    assert "not a readable audio file" in reasons["car/corrupt.wav"]
    assert len(cache) == 31 and "wind/silent.wav" in cache.paths and cache.features.shape == (31, 30, 128)
    assert np.bincount(cache.labels).tolist() == [10, 10, 11]
    # rows stay aligned with their clips after the bad ones are dropped
    from softmoa_cli.engine.data.cache_build import clip_features

    i = cache.paths.index("wind/wind_3.wav")
    assert np.array_equal(cache.features[i], clip_features(root / "wind/wind_3.wav", cache.feature_config)[0])


def test_accepted_bad_share_is_remembered_for_finetune_and_evaluate(tmp_path, monkeypatch):
    """prepare --max-bad 10% accepts 2 bad clips of 20; finetune on the same cache (no flag)
    and evaluate of its run accept them too; a stricter --max-bad on finetune is still honoured."""
    root = class_folders(tmp_path / "mine", per_class=6)
    for k in range(2):
        (root / "car" / f"empty{k}.wav").write_bytes(b"")
    home = tmp_path / "home"
    monkeypatch.setenv("SOFTMOA_HOME", str(home))
    assert run("prepare", root, "--home", home, "-j", "1", "--max-length", "30").exit_code == 2
    assert run("prepare", root, "--home", home, "-j", "1", "--max-length", "30", "--max-bad", "0.1").exit_code == 0
    preset = tmp_path / "tiny.yaml"
    preset.write_text("model:\n  checkpoint: random\n  random: {dim: 32, depth: 1, heads: 2, mlp_dim: 64}\n")
    tiny = ["--preset", preset, "--method", "linear", "--epochs", "1", "--batch-size", "4", "--max-length", "30"]
    trained = run("finetune", "--dataset", root, *tiny, "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    evaluated = run("evaluate", tmp_path / "run", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    strict = run("finetune", "--dataset", root, *tiny, "--out", tmp_path / "strict", "--max-bad", "0.5%")
    assert strict.exit_code == 2 and "2 of 20 clips are bad (10%), above the accepted 0.5%" in strict.output


def test_long_clips_keep_every_window_and_short_ones_one(tmp_path):
    """A 0.9 s clip at 30 frames has windows at 0, 30, 60 and 58 (end-aligned); the cache keeps
    the first in features and the others in extra, and the table hands all four to evaluation."""
    from softmoa_cli.engine.data.cache_build import clip_features
    from softmoa_cli.engine.data.features import window_starts
    from softmoa_cli.engine.data.cache_open import open_dataset
    from softmoa_cli.engine.config import build_config

    root = tmp_path / "mine"
    for c, name in enumerate(("a", "b")):
        for k in range(5):
            write_wav(root / name / f"{name}_{k}.wav", seconds=0.9 if k == 0 else 0.2, seed=10 * c + k)
    cache, _ = prepare_cache(root, max_length=30, home=tmp_path / "home")
    assert window_starts(88, 30) == [0, 30, 58]
    long = [cache.paths.index(f"{name}/{name}_0.wav") for name in ("a", "b")]
    assert cache.windows.tolist() == [3 if i in long else 1 for i in range(len(cache))]
    assert cache.extra.shape == (4, 30, 128)
    whole = clip_features(root / "b/b_0.wav", cache.feature_config)
    assert whole.shape == (3, 30, 128)
    config = build_config({"data": {"dataset": str(root), "max_length": 30}})
    import os

    os.environ["SOFTMOA_HOME"], saved = str(tmp_path / "home"), os.environ["SOFTMOA_HOME"]
    try:
        table = open_dataset(config.data)
    finally:
        os.environ["SOFTMOA_HOME"] = saved
    short = next(i for i in range(len(cache)) if i not in long)
    [(x, owner)] = table.window_batches(np.array([long[1], short]), limit=100)
    assert owner.tolist() == [0, 0, 0, 1]
    assert np.array_equal(x[:3].numpy(), whole.astype(np.float32))
    assert np.array_equal(x[3].numpy(), cache.features[short].astype(np.float32))
    # at most `limit` windows read at once: the long clip's three windows span two batches
    batches = list(table.window_batches(np.array([long[1], short]), limit=2))
    assert [b[1].tolist() for b in batches] == [[0, 0], [0, 1]]
    assert torch.equal(torch.cat([b[0] for b in batches]), x)


def test_batch_reads_and_specaugment(tmp_path):
    """What training reads: a batch in any index order, and SpecAugment repeatable per generator."""
    root = class_folders(tmp_path / "mine", per_class=8)
    cache = open_cache(root, max_length=40, home=tmp_path / "home", workers=1, message=lambda m: None)
    assert cache is not None and resolve(root).name == cache.name
    train = np.flatnonzero(cache.split == "train")
    chosen = train[[4, 0, 3]]  # unsorted: the read sorts and puts rows back in this order
    x, y = cache.batch(chosen)
    assert x.dtype == torch.float32 and x.shape == (3, 40, 128) and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(cache.features[chosen].astype(np.float32)))
    assert y.tolist() == cache.labels[chosen].tolist()
    masked = spec_augment(x, 24, 10, torch.Generator().manual_seed(3))
    assert torch.equal(masked, spec_augment(x, 24, 10, torch.Generator().manual_seed(3)))
    zeroed = int(((masked == 0) & (x != 0)).sum())
    assert zeroed > 0 and torch.equal(masked[masked != 0], x[masked != 0])


def test_plugin_data_sets_register_through_entry_points(tmp_path, monkeypatch):
    from softmoa_cli.engine import registry as base
    from softmoa_cli.engine.data import registry
    from softmoa_cli.engine.data.fsdd import SPEC

    class Point:
        name, value = "digits", "example:register"

        @staticmethod
        def load():
            return lambda reg: reg.register("digits", SPEC.__class__(**{**SPEC.__dict__, "name": "digits"}),
                                            builtin=False)

    monkeypatch.setattr(base, "entry_points", lambda group: [Point] if group == "softmoa.datasets" else [])
    registry.datasets.cache_clear()
    try:
        assert registry.datasets().names()[-1] == "digits" and resolve("digits").max_length == 100
    finally:
        registry.datasets.cache_clear()


def test_one_class_is_refused_before_any_work(tmp_path):
    root = class_folders(tmp_path / "mine", per_class=4, classes=("dog",))
    result = run("prepare", root, "--home", tmp_path / "home", "-j", "1")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "every clip is 'dog'" in result.stderr and "background/" in result.stderr
    assert "labels column" in result.stderr and not (tmp_path / "home" / "cache").exists()


def test_folds_that_hold_whole_classes_are_refused_and_an_untrained_class_is_said(tmp_path, monkeypatch):
    """ESC-50's layout with each fold holding whole classes: no test class was ever trained."""
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    rows, names = [], [f"c{c}" for c in range(10)]
    for c, name in enumerate(names):
        for k in range(3):
            write_wav(tmp_path / "data" / f"{name}_{k}.wav", seconds=0.1, seed=c * 10 + k)
            rows.append([f"{name}_{k}.wav", name, c // 2 + 1])  # fold 1: c0, c1; fold 2: c2, c3; ...
    write_csv(tmp_path / "data" / "whole.csv", ["path", "label", "fold"], rows)
    preset = tmp_path / "tiny.yaml"
    preset.write_text("model:\n  checkpoint: random\n  random: {dim: 32, depth: 1, heads: 2, mlp_dim: 64}\n")
    args = ["--preset", preset, "-m", "linear", "--epochs", "1", "--batch-size", "4", "--max-length", "20"]
    refused = run("finetune", "-d", tmp_path / "data" / "whole.csv", *args, "--out", tmp_path / "run")
    assert refused.exit_code == 2 and refused.stderr.strip().splitlines()[-1].startswith("error: ")
    assert ("fold 1: none of its test labels (c0, c1) has a training clip, so every test clip would be missed; "
            "reassign the folds") in " ".join(refused.stderr.split()) and not (tmp_path / "run").exists()
    rows[0][2] = 3  # a c0 clip in fold 3: fold 1 tests c0 (trained on) and c1 (never trained on)
    write_csv(tmp_path / "data" / "mixed.csv", ["path", "label", "fold"], rows)
    trained = run("finetune", "-d", tmp_path / "data" / "mixed.csv", *args, "--fold", "1", "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    said = " ".join(trained.stderr.split())
    assert "fold 1: test clips of c1 have no training clip in this fold and can only be missed" in said
    assert "fold 1: validation clips of c2, c3 have no training clip" in said  # fold 2 validates fold 1


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
