"""Real speech: FSDD (a copy of the recordings) installed, prepared on 2 processes, official split."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.cache_open import open_cache
from softmoa_cli.engine.data.features import FeatureConfig, features


@pytest.fixture(scope="module")
def fsdd_home(tmp_path_factory, fsdd_recordings):
    """FSDD copied to a temporary folder, installed with `download --from` and prepared with --workers 2."""
    tmp = tmp_path_factory.mktemp("fsdd")
    shutil.copytree(fsdd_recordings, tmp / "copy" / "recordings")
    home = tmp / "home"
    runner = CliRunner()
    installed = runner.invoke(build_app(), ["download", "fsdd", "--from", str(tmp / "copy"), "--home", str(home)])
    assert installed.exit_code == 0 and "installed 3,000 clips" in installed.stdout, installed.output
    prepared = runner.invoke(build_app(), ["prepare", "fsdd", "--home", str(home), "--workers", "2"])
    assert prepared.exit_code == 0, prepared.output
    assert "fsdd: 3,000 clips cached, 0 bad" in prepared.stdout
    return home


def test_official_split_and_labels(fsdd_home):
    cache = open_cache("fsdd", home=fsdd_home, prepare=False)
    assert cache.features.shape == (3000, 100, 128) and isinstance(cache.features, np.memmap)
    assert int((cache.split == "train").sum()) == 2700 and int((cache.split == "test").sum()) == 300
    assert cache.label_names == [str(d) for d in range(10)]
    assert np.bincount(cache.labels).tolist() == [300] * 10
    assert np.bincount(cache.labels[cache.split == "test"]).tolist() == [30] * 10
    i = cache.paths.index("recordings/7_jackson_32.wav")
    assert (cache.labels[i], cache.split[i]) == (7, "train")
    assert cache.split[cache.paths.index("recordings/7_jackson_4.wav")] == "test"


def test_features_equal_the_feature_function(fsdd_home, fsdd_recordings):
    """Cached rows are the float16 of features() on the 16 kHz mono clip (cut or padded to 100)."""
    cache = open_cache("fsdd", home=fsdd_home, prepare=False)
    for name in ("0_jackson_0.wav", "9_theo_49.wav", "3_nicolas_17.wav"):
        i = cache.paths.index(f"recordings/{name}")
        wave = load_mono_16k(fsdd_recordings / name)
        expected = features(wave, FeatureConfig(max_length=100)).numpy().astype(np.float16)
        assert np.array_equal(cache.features[i], expected)


def test_second_prepare_is_a_fast_no_op(fsdd_home):
    started = time.perf_counter()
    result = CliRunner().invoke(build_app(), ["prepare", "fsdd", "--home", str(fsdd_home)])
    assert result.exit_code == 0 and "already prepared" in result.stdout
    assert time.perf_counter() - started < 5


def test_training_glue_sees_the_official_split(fsdd_home, monkeypatch):
    """The training side's contract: open_dataset over this cache, then its plan of splits."""
    from softmoa_cli.config import load_config
    from softmoa_cli.engine.data.splits import plan_splits
    from softmoa_cli.engine.data.cache_open import open_dataset

    monkeypatch.setenv("SOFTMOA_HOME", str(fsdd_home))
    table = open_dataset(load_config("fsdd-cpu").data, message=print)
    plan, = plan_splits(table, load_config("fsdd-cpu").data)
    assert (len(plan.train), len(plan.valid), len(plan.test)) == (2430, 270, 300)
    x, y = table.batch(plan.test[:8])
    assert x.shape == (8, 100, 128) and y.tolist() == table.labels[plan.test[:8]].tolist()
