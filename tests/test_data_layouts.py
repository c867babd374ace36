"""Every data set layout, as an archive and as a folder, through `download --from` and `prepare`;
FSD50K's release layout (multi-label) and its ground truth checked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import (FSD50K_ROWS, FSD50K_VOCABULARY, make_archive, make_esc50, make_fsc, make_fsd50k,
                     make_speechcommands, make_us8k, run, write_csv)

from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.cache import load_cache
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.cache_open import open_cache
from softmoa_cli.engine.data.features import FeatureConfig, features
from softmoa_cli.engine.data.fsd50k import scan
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.task import MULTI


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "default-home"))


def install_both_ways(tmp_path: Path, name: str, make, archive_name: str, top_in_archive: bool = True):
    """Install from an archive (home A) and from the folder (home B), prepare both; return the caches."""
    source = tmp_path / "source"
    made = make(source)
    archive = make_archive(source, tmp_path / archive_name)
    caches = []
    for home, origin in ((tmp_path / "home-a", archive), (tmp_path / "home-b", source)):
        result = run("download", name, "--from", origin, "--home", home)
        assert result.exit_code == 0, result.output
        assert "installed" in result.stdout and (home / "data" / name).is_dir()
        again = run("download", name, "--from", origin, "--home", home)
        assert again.exit_code == 0 and "already there" in again.stdout
        result = run("prepare", name, "--home", home, "--workers", "1")
        assert result.exit_code == 0, result.output
        caches.append(open_cache(name, home=home, prepare=False))
    a, b = caches
    assert a.paths == b.paths and a.label_names == b.label_names
    assert np.array_equal(np.asarray(a.features), np.asarray(b.features))
    assert not list(tmp_path.glob("home-*/data/.*staging*"))  # no leftovers
    return a, made


def test_esc50(tmp_path):
    cache, root = install_both_ways(tmp_path, "esc50", make_esc50, "ESC-50-master.zip")
    assert cache.label_names == ["dog", "rain", "clock_tick"]
    assert cache.features.shape == (15, 500, 128) and cache.features.dtype == np.float16
    assert sorted(cache.fold.tolist()) == sorted([1, 2, 3, 4, 5] * 3)
    assert set(cache.split.tolist()) == {"train"}
    i = cache.paths.index("audio/3-102-A-2.wav")
    assert (cache.labels[i], cache.fold[i]) == (2, 3)
    expected = features(load_mono_16k(root / "audio/3-102-A-2.wav"), FeatureConfig(max_length=500))
    assert np.allclose(cache.features[i].astype(np.float32), expected.numpy(), atol=2e-3)


def test_us8k_mixed_formats(tmp_path):
    cache, root = install_both_ways(tmp_path, "us8k", make_us8k, "UrbanSound8K.tar.gz")
    assert cache.label_names == ["air_conditioner", "car_horn", "dog_bark"]
    assert len(cache) == 6 and not cache.bad and cache.features.shape[1] == 400
    assert cache.paths[0] == "audio/fold1/100-3-0-0.wav"
    assert cache.labels.tolist() == [2, 0, 1, 2, 0, 1] and cache.fold.tolist() == [1, 2, 3, 1, 2, 3]
    # the 24-bit stereo 44.1 kHz file and the 8-bit one: mono mix at 16 kHz, 0.25 s = 23 frames then padding
    for k in (0, 1):
        expected = features(load_mono_16k(root / cache.paths[k]), FeatureConfig(max_length=400)).numpy()
        assert np.allclose(cache.features[k].astype(np.float32), expected, atol=2e-3)
        assert not np.allclose(expected[:20], expected[30])  # real signal at the start, padding later


def test_speechcommands(tmp_path):
    cache, _ = install_both_ways(tmp_path, "speechcommands", make_speechcommands, "speech_commands_v0.02.tar.gz")
    assert cache.label_names == ["no", "up", "yes"] and len(cache) == 12  # _background_noise_ is not a class
    assert not any(p.startswith("_background_noise_") for p in cache.paths)
    split = dict(zip(cache.paths, cache.split.tolist()))
    assert split["no/spk1_nohash_0.wav"] == "valid" and split["up/spk2_nohash_0.wav"] == "test"
    assert split["up/spk1_nohash_0.wav"] == "train"
    assert [int((cache.split == s).sum()) for s in ("train", "valid", "test")] == [7, 2, 3]
    assert set(cache.fold.tolist()) == {0} and cache.features.shape == (12, 100, 128)


def test_fsc(tmp_path):
    cache, _ = install_both_ways(tmp_path, "fsc", make_fsc, "fsc.tar.gz")
    assert cache.label_names == ["activate-lights-kitchen", "change language-Chinese-none", "increase-heat-none"]
    assert [int((cache.split == s).sum()) for s in ("train", "valid", "test")] == [3, 1, 2]
    i = cache.paths.index("wavs/speakers/s4/e.wav")
    assert (cache.split[i], cache.label_names[cache.labels[i]]) == ("test", "change language-Chinese-none")
    assert cache.features.shape == (6, 400, 128)


def test_fsc_without_from_says_how_to_get_it(tmp_path):
    result = run("download", "fsc", "--home", tmp_path)
    assert result.exit_code == 2 and "--from" in result.output and "license" in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one error line (wrapped at most by the terminal)


def test_wrong_folder_is_one_clear_line(tmp_path):
    make_fsc(tmp_path / "fsc")
    result = run("download", "esc50", "--from", tmp_path / "fsc", "--home", tmp_path / "home")
    assert result.exit_code == 2 and "meta/esc50.csv" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "home" / "data" / "esc50").exists()


def test_incomplete_copy_is_refused(tmp_path):
    root = make_esc50(tmp_path / "src")
    (root / "audio" / "1-100-A-0.wav").unlink()
    result = run("download", "esc50", "--from", tmp_path / "src", "--home", tmp_path / "home")
    assert result.exit_code == 2 and "1 of 15 listed clips are missing" in result.output


def test_changed_settings_make_a_new_cache(tmp_path):
    make_speechcommands(tmp_path / "sc")
    home = tmp_path / "home"
    assert run("download", "speechcommands", "--from", tmp_path / "sc", "--home", home).exit_code == 0
    first = run("prepare", "speechcommands", "--home", home, "-j", "1")
    second = run("prepare", "speechcommands", "--home", home, "-j", "1", "--max-length", "50")
    assert first.exit_code == second.exit_code == 0
    folders = sorted(p.name for p in (home / "cache" / "speechcommands").iterdir() if not p.name.startswith("."))
    assert len(folders) == 2 and {f.split("-")[0] for f in folders} == {"L100", "L50"}
    assert load_cache(home / "cache" / "speechcommands" / folders[1]).features.shape == (12, 50, 128)
    # a changed source file (another size or time) is a new source fingerprint, not a silent reuse
    again = run("prepare", "speechcommands", "--home", home, "-j", "1")
    assert "already prepared" in again.stdout
    path = home / "data" / "speechcommands" / "no" / "spk0_nohash_0.wav"
    os.utime(path, ns=(1, 1))  # same bytes, another modification time
    changed = run("prepare", "speechcommands", "--home", home, "-j", "1")
    assert changed.exit_code == 0 and "already prepared" not in changed.stdout


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
