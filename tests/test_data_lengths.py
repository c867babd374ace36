"""Defaults taken from the data: users' clips without a stated max_length get one derived from
their durations, said aloud; a length that pads or cuts most clips is warned about."""

from __future__ import annotations

import numpy as np
from helpers import run, write_wav

from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.features import choose_max_length, frames_of, length_warning


def short_clips(root, seconds=(0.3, 0.5, 0.8, 1.2, 2.2)):
    for c, name in enumerate(("bird", "car")):
        for k, length in enumerate(seconds * 4):
            write_wav(root / name / f"{name}_{k}.wav", seconds=length, seed=100 * c + k)
    return root


def test_max_length_covers_95_percent_of_the_clips():
    frames = np.array([frames_of(s) for s in [0.3] * 50 + [2.2] * 45 + [9.0] * 5])
    assert frames_of(1.0) == 98 and frames_of(0.01) == 1
    assert choose_max_length(frames) == 220  # 95 % of the clips are at most 2.2 s (218 frames)
    assert choose_max_length(np.array([frames_of(60.0)] * 10)) == 1024  # capped at the AudioSet AST's input
    assert choose_max_length(np.array([3])) == 16  # at least one patch


def test_folder_of_short_clips_gets_a_short_max_length_said_aloud(tmp_path):
    root = short_clips(tmp_path / "mine")
    said = []
    cache, _ = prepare_cache(root, home=tmp_path / "home", message=said.append)
    assert cache.feature_config.max_length == 220  # not 1024: the longest clip is 2.2 s
    assert any("max_length 220 frames (2.20 s) from the clip durations" in line and "holds 100% of 40 clips" in line
               for line in said), said
    result = run("prepare", root, "--home", tmp_path / "home", "-j", "1")  # prepared before: said once, not again
    assert result.exit_code == 0 and "from the clip durations" not in result.stderr and "max_length 220" in result.stdout


def test_most_clips_heavily_padded_or_cut_is_warned(tmp_path):
    frames = np.array([frames_of(0.3)] * 8 + [frames_of(2.0)] * 2)
    assert "80% of the clips fill less than half of max_length 300" in length_warning(frames, 300)
    assert "longer than max_length 20" in length_warning(frames, 20)
    assert length_warning(np.array([150, 180, 200, 90]), 200) is None
    root = short_clips(tmp_path / "mine", seconds=(0.2, 0.3))
    result = run("prepare", root, "--home", tmp_path / "home", "-j", "1", "--max-length", "500")
    assert result.exit_code == 0 and "100% of the clips fill less than half of max_length 500" in result.stderr
