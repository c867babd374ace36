"""The registered multi-label data sets: FSD50K (its release layout through `download --from` and
`prepare`) and the embedded synth-multi (mixtures of 1-3 synth events, generated on first use)."""

from __future__ import annotations

import numpy as np
import pytest
from softmoa_cli.engine.task import MULTI
from helpers import FSD50K_ROWS, FSD50K_VOCABULARY, make_fsd50k, run, write_csv

from softmoa_cli.engine.data import synth, synth_sets
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.custom import scan_manifest
from softmoa_cli.engine.data.fsd50k import scan
from softmoa_cli.engine.errors import SoftmoaError


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "default-home"))


# --- FSD50K -----------------------------------------------------------------------------------


def test_fsd50k_from_the_extracted_release(tmp_path):
    source = make_fsd50k(tmp_path / "release").parent
    (source / "FSD50K" / "FSD50K.eval_audio" / "37200.wav").write_bytes(b"RIFF\x00\x00not audio at all" * 8)
    home = tmp_path / "home"
    installed = run("download", "fsd50k", "--from", source, "--home", home)
    assert installed.exit_code == 0 and "installed 8 clips" in installed.stdout, installed.output
    strict = run("prepare", "fsd50k", "--home", home, "-j", "1")
    assert strict.exit_code == 2 and "1 of 8 clips are bad" in strict.output  # 12.5 %, above the default 1 %
    assert "7 clips cached, 1 bad skipped" in strict.stdout
    cache, built = prepare_cache("fsd50k", home=home)
    assert not built and (cache.task is MULTI) and cache.label_names == FSD50K_VOCABULARY
    assert cache.bad == [("FSD50K.eval_audio/37200.wav", cache.bad[0][1])] and "not a readable" in cache.bad[0][1]
    assert cache.listed == 8 and cache.features.shape == (7, 1024, 128) and cache.labels.shape == (7, 5)
    expected = {}
    for file, (labels, split) in FSD50K_ROWS.items():
        part, fname = file.split("/")
        row = [int(name in labels.split(",")) for name in FSD50K_VOCABULARY]
        expected[f"FSD50K.{part}_audio/{fname}.wav"] = (row, {"train": "train", "val": "valid", None: "test"}[split])
    del expected["FSD50K.eval_audio/37200.wav"]
    assert {p: (cache.labels[i].tolist(), str(cache.split[i])) for i, p in enumerate(cache.paths)} == expected
    assert cache.labels[cache.paths.index("FSD50K.dev_audio/1004.wav")].tolist() == [1, 0, 1, 1, 0]
    assert [int((cache.split == s).sum()) for s in ("train", "valid", "test")] == [3, 2, 2]
    assert cache.windows[cache.paths.index("FSD50K.dev_audio/1002.wav")] == 2  # 12 s: two windows of 1024 frames
    assert set(cache.fold.tolist()) == {0}


def test_fsd50k_without_from_says_where_to_get_it(tmp_path):
    result = run("download", "fsd50k", "--home", tmp_path)
    assert result.exit_code == 2 and "zenodo.org/record/4060432" in result.output
    assert "softmoa download fsd50k --from FOLDER" in " ".join(result.output.split())


def test_fsd50k_ground_truth_that_does_not_fit_is_one_clear_error(tmp_path):
    root = make_fsd50k(tmp_path)
    truth = root / "FSD50K.ground_truth"
    dev = (truth / "dev.csv").read_text()
    (truth / "dev.csv").write_text(dev.replace("/m/01x,train", "/m/01x,holdout", 1))
    with pytest.raises(SoftmoaError, match="split 'holdout'; expected train or val"):
        scan(root)
    (truth / "dev.csv").write_text(dev.replace("Rain,Bark", "Rain,Meow", 1))
    with pytest.raises(SoftmoaError, match="label 'Meow', which is not in FSD50K.ground_truth/vocabulary.csv"):
        scan(root)
    (truth / "dev.csv").write_text(dev)
    write_csv(truth / "vocabulary.csv", ["index", "label", "mid"], [[0, "Rain", "/m/0"]])  # a header: not the release
    with pytest.raises(SoftmoaError, match="line 1 .* not index,label,mid"):
        scan(root)


# --- synth-multi ------------------------------------------------------------------------------


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
