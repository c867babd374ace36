"""An interrupted prepare resumes and ends with the same cache as an uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import write_wav

from softmoa_cli.engine.data.cache_build import prepare_cache

CLIPS = 96
CHUNK = 8

KILLER = """
import os, signal, sys
from pathlib import Path
from softmoa_cli.engine.data.cache_build import prepare_cache

def progress(done, total):
    if done >= {after}:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: like a power cut of the process

prepare_cache(Path(sys.argv[1]), max_length=100, home=Path(sys.argv[2]), workers=1, chunk={chunk}, progress=progress)
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "clips"
    for k in range(CLIPS):
        write_wav(root / f"class{k % 4}" / f"{k}.wav", seconds=1.0, seed=k)
    return root


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory):
    cache, built = prepare_cache(clips, max_length=100, home=tmp_path_factory.mktemp("ref"), workers=1, chunk=CHUNK)
    assert built
    return cache


def same_cache(a, b) -> None:
    assert a.path.name == b.path.name  # same settings and sources: same key
    assert (a.path / "features.f16").read_bytes() == (b.path / "features.f16").read_bytes()
    assert json.loads((a.path / "index.json").read_text()) == json.loads((b.path / "index.json").read_text())


def test_killed_process_resumes_to_an_identical_cache(clips, reference, tmp_path):
    home = tmp_path / "home"
    killed = subprocess.run([sys.executable, "-c", KILLER.format(after=3 * CHUNK, chunk=CHUNK), str(clips), str(home)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    partial, = (home / "cache").glob("*/.*.partial")
    state = json.loads((partial / "state.json").read_text())
    assert state["done"] == [0, 1, 2]  # three chunks recorded before the kill
    assert not [p for p in partial.parent.iterdir() if not p.name.startswith(".")]  # nothing published

    seen = []
    cache, built = prepare_cache(clips, max_length=100, home=home, workers=1, chunk=CHUNK,
                                 progress=lambda done, total: seen.append(done))
    assert built and seen[0] == 3 * CHUNK and seen[-1] == CLIPS  # started where it stopped
    assert not partial.exists()
    same_cache(cache, reference)


def test_interrupted_parallel_prepare_resumes(clips, reference, tmp_path):
    def stop(done, total):
        if done >= 4 * CHUNK:
            raise KeyboardInterrupt

    home = tmp_path / "home"
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(clips, max_length=100, home=home, workers=2, chunk=CHUNK, progress=stop)
    cache, built = prepare_cache(clips, max_length=100, home=home, workers=2, chunk=CHUNK)
    assert built and len(cache) == CLIPS and np.bincount(cache.labels).tolist() == [CLIPS // 4] * 4
    same_cache(cache, reference)


def test_interrupted_publish_resumes(tmp_path, monkeypatch):
    """Killed between dropping the bad rows and the final rename: the next run finishes the job."""
    import os

    from softmoa_cli.engine.data import cache_build as module

    root = tmp_path / "clips"
    for k in range(12):
        write_wav(root / f"c{k % 2}" / f"{k}.wav", seed=k)
    (root / "c0" / "broken.wav").write_bytes(b"not audio at all")
    reference, _ = prepare_cache(root, max_length=20, home=tmp_path / "ref", workers=1)
    real = os.replace

    def crash_on_rename(source, target):
        if str(source).endswith(".partial"):
            raise KeyboardInterrupt
        real(source, target)

    monkeypatch.setattr(module.os, "replace", crash_on_rename)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(root, max_length=20, home=tmp_path / "home", workers=1)
    monkeypatch.setattr(module.os, "replace", real)
    cache, built = prepare_cache(root, max_length=20, home=tmp_path / "home", workers=1)
    assert built and len(cache) == 12 and [p for p, _ in cache.bad] == ["c0/broken.wav"]
    same_cache(cache, reference)
