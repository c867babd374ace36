"""The embedded synth data sets: ``synth`` deterministic, balanced, valid WAV, learnable but not
trivial; ``synth-multi`` mixtures of 1-3 synth events, generated and prepared on first use."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run

from softmoa_cli.engine.data import synth, synth_sets
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.custom import scan_manifest
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.task import MULTI


PER_CLASS = 40


def read_manifest(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def downstream(tmp_path_factory) -> Path:
    """The downstream manifest with ``PER_CLASS`` clips a class, seed 0, made once."""
    return synth.generate(tmp_path_factory.mktemp("synth"), "downstream", per_class=PER_CLASS, seed=0)


def test_same_seed_gives_identical_bytes(tmp_path, downstream):
    first = synth.generate(tmp_path / "a", "downstream", per_class=4, seed=0)
    second = synth.generate(tmp_path / "b", "downstream", per_class=4, seed=0)
    assert tree_bytes(first.parent) == tree_bytes(second.parent)
    # a clip does not depend on how many clips a class has
    for row in read_manifest(first):
        assert (first.parent / row["path"]).read_bytes() == (downstream.parent / row["path"]).read_bytes()


def test_different_seeds_give_different_clips(tmp_path):
    zero = tree_bytes(synth.generate(tmp_path / "a", "upstream", per_class=3, seed=0).parent / "audio")
    one = tree_bytes(synth.generate(tmp_path / "b", "upstream", per_class=3, seed=1).parent / "audio")
    assert zero.keys() == one.keys()
    assert all(zero[name] != one[name] for name in zero)


def test_classes_are_balanced(downstream):
    labels = [row["label"] for row in read_manifest(downstream)]
    assert Counter(labels) == {label: PER_CLASS for label in synth.TASKS["downstream"]}


def test_splits_are_disjoint_and_present_for_every_class(downstream):
    rows = read_manifest(downstream)
    assert len({row["path"] for row in rows}) == len(rows)
    for label in synth.TASKS["downstream"]:
        splits = Counter(row["split"] for row in rows if row["label"] == label)
        assert splits == {"train": 28, "valid": 6, "test": 6}


def test_tasks_have_ten_or_more_disjoint_classes():
    downstream, upstream = set(synth.TASKS["downstream"]), set(synth.TASKS["upstream"])
    assert len(downstream) >= 10 and len(upstream) >= 10
    assert not downstream & upstream


def test_files_are_one_second_16k_mono_pcm16(downstream):
    for row in read_manifest(downstream):
        path = downstream.parent / row["path"]
        assert path.parts[-2] == row["label"]
        info = sf.info(str(path))
        assert (info.format, info.subtype) == ("WAV", "PCM_16")
        assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 16_000)
        peak = np.abs(sf.read(str(path))[0]).max()
        assert 10 ** (-24.5 / 20) < peak < 10 ** (-2.5 / 20)


def test_rerun_leaves_files_untouched_and_repairs_a_damaged_one(tmp_path):
    manifest = synth.generate(tmp_path, "downstream", per_class=3)
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    damaged = manifest.parent / "audio" / "vowel_a" / "vowel_a_1.wav"
    good = damaged.read_bytes()
    damaged.write_bytes(b"not audio")
    synth.generate(tmp_path, "downstream", per_class=3)
    assert damaged.read_bytes() == good
    after = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    del before[damaged], after[damaged]
    assert after == before


def test_progress_counts_every_clip(tmp_path):
    seen = []
    synth.generate(tmp_path, "upstream", per_class=3, progress=lambda done, total: seen.append((done, total)))
    total = 3 * len(synth.TASKS["upstream"])
    assert seen == [(done, total) for done in range(1, total + 1)]


@pytest.mark.parametrize("task, per_class", [("nope", 10), ("downstream", 2)])
def test_bad_arguments_are_user_errors(tmp_path, task, per_class):
    with pytest.raises(SoftmoaError):
        synth.generate(tmp_path, task, per_class=per_class)


@pytest.fixture
def one_thread():
    """Torch on one thread: per-clip feature ops are tiny, and two threads sharing two busy
    cores spin-wait for ~100x longer than the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mean_log_mel_separates_classes_only_partly(downstream, one_thread):
    """A nearest-centroid classifier on mean log-mel beats chance (1/12) but is far from perfect.

    Measured with seed 0: 0.181 (13 of 72 test clips) at 40 clips a class; at 60 a class,
    0.25 here and 0.49 for a linear probe, while a small CNN over the whole log-mel
    spectrogram reached 0.98: what is left lies in the temporal structure.
    """
    from softmoa_cli.engine.data.features import log_mel

    rows = [row for row in read_manifest(downstream) if row["split"] != "valid"]
    waves = [torch.from_numpy(sf.read(str(downstream.parent / row["path"]), dtype="float32")[0]) for row in rows]
    means = torch.stack([log_mel(wave).mean(0) for wave in waves])  # [clips, mel_bins]
    labels = np.array([row["label"] for row in rows])
    train = np.array([row["split"] == "train" for row in rows])
    x = ((means - means[train].mean(0)) / (means[train].std(0) + 1e-6)).numpy()
    names = synth.TASKS["downstream"]
    centroids = np.stack([x[train & (labels == name)].mean(0) for name in names])  # [classes, mel_bins]
    guess = np.array(names)[((x[~train][:, None] - centroids) ** 2).sum(-1).argmin(1)]
    accuracy = float((guess == labels[~train]).mean())
    assert 0.13 < accuracy < 0.35


def test_synth_mixtures_are_deterministic_balanced_and_hold_1_to_3_distinct_events(tmp_path):
    a = synth.generate_mixtures(tmp_path / "a", clips=36, seed=0)
    b = synth.generate_mixtures(tmp_path / "b", clips=24, seed=0)  # fewer clips: the same first files
    c = synth.generate_mixtures(tmp_path / "c", clips=24, seed=1)
    files = [f"audio/mix_{i}.wav" for i in range(24)]
    assert all((a.parent / f).read_bytes() == (b.parent / f).read_bytes() for f in files)
    assert sum((a.parent / f).read_bytes() != (c.parent / f).read_bytes() for f in files) == 24
    clips = scan_manifest(a)
    assert (clips.task is MULTI) and clips.label_names == sorted(synth.TASKS["downstream"])
    listed = [len(line.split(",")[1].split(";")) for line in a.read_text().splitlines()[1:]]
    sizes = clips.labels.sum(axis=1)
    assert sizes.tolist() == listed and set(sizes.tolist()) == {1, 2, 3}  # distinct events in every clip
    assert np.bincount(sizes)[1:].tolist() == [12, 12, 12]
    counts = clips.labels.sum(axis=0)
    assert counts.max() <= 1.5 * counts.min()  # balanced (equal here: every class once per 6 clips)
    assert [int((clips.split == s).sum()) for s in ("train", "valid", "test")] == [24, 6, 6]
    for s in ("train", "valid", "test"):  # every class in every split
        assert clips.labels[clips.split == s].sum(axis=0).min() > 0


def test_synth_multi_prepares_a_multi_label_cache_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_sets, "MIXTURES", 18)
    home = tmp_path / "home"
    result = run("prepare", "synth-multi", "--home", home, "-j", "1")
    assert result.exit_code == 0 and "18 clips cached, 0 bad" in result.stdout, result.output
    cache, built = prepare_cache("synth-multi", home=home)
    assert not built and (cache.task is MULTI) and cache.labels.shape == (18, 12) and cache.features.shape[1:] == (100, 128)
    assert set(cache.labels.sum(axis=1).tolist()) == {1, 2, 3} and not cache.bad
    assert [int((cache.split == s).sum()) for s in ("train", "valid", "test")] == [6, 6, 6]
    _, y = cache.batch(np.arange(3))
    assert y.shape == (3, 12) and y.dtype.is_floating_point
    listing = run("download", "--home", home)
    assert "synth-multi" in listing.stdout and "fsd50k" in listing.stdout
