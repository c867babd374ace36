"""Training on clips longer than max_length: a seeded random max_length crop
of each long clip per training step, rebuilt from the cache's stored windows; the cache keeps
each clip up to --max-seconds; short clips train exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from helpers import Kill, KillAt, _comparable, run, toy_config, write_wav

from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.features import log_mel, normalize
from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.train.loop import step_seed

L = 100  # max_length: a 3 s clip has 298 frames, windows at 0, 100 and 198


def long_folder(root, seconds=3.0, per_class=5, classes=("low", "high")):
    for c, name in enumerate(classes):
        for k in range(per_class):
            write_wav(root / name / f"{name}_{k}.wav", seconds=seconds, seed=c * 7 + k)
    return root


@pytest.fixture(scope="module")
def long_cache(tmp_path_factory):
    base = tmp_path_factory.mktemp("long")
    root = long_folder(base / "mine")
    cache, _ = prepare_cache(root, max_length=L, home=base / "home")
    return root, base / "home", cache


def test_the_cache_keeps_each_long_clips_windows_and_frames(long_cache):
    _, _, cache = long_cache
    assert cache.windows.tolist() == [3] * len(cache) and cache.frames.tolist() == [298] * len(cache)
    assert cache.extra.shape == (2 * len(cache), L, 128)


def test_a_crop_is_the_clips_own_frames_at_the_drawn_start(long_cache):
    root, _, cache = long_cache
    indices = np.array([3, 0, 7, 3])
    starts = cache.crop_starts(indices, torch.Generator().manual_seed(11))
    x, y = cache.crop_batch(indices, torch.Generator().manual_seed(11))
    assert x.shape == (4, L, 128) and x.dtype == torch.float32
    assert torch.equal(y, torch.from_numpy(cache.labels[indices]))
    assert ((0 <= starts) & (starts <= 298 - L)).all() and len(set(starts.tolist())) > 1
    for position, index in enumerate(indices.tolist()):
        wave = load_mono_16k(root / cache.paths[index])
        frames = normalize(log_mel(wave, cache.feature_config), cache.feature_config).half()  # [298, 128]
        assert frames.shape[0] == 298
        start = int(starts[position])
        assert torch.equal(x[position], frames[start:start + L].float()), (index, start)
    # crops across the window seams and inside the end-aligned last window are rebuilt right too
    for start in (0, 1, 99, 100, 101, 150, 197, 298 - L):
        wave = load_mono_16k(root / cache.paths[5])
        frames = normalize(log_mel(wave, cache.feature_config), cache.feature_config).half()
        assert np.array_equal(cache._crop(5, start), frames[start:start + L].float().numpy()), start


def test_crops_are_seeded_and_differ_between_epochs(long_cache):
    _, _, cache = long_cache
    indices = np.arange(len(cache))

    def starts(epoch, step=0):
        return cache.crop_starts(indices, torch.Generator().manual_seed(step_seed(3, 0, epoch, step, 3)))

    assert np.array_equal(starts(0), starts(0)) and np.array_equal(starts(1, 2), starts(1, 2))
    assert not np.array_equal(starts(0), starts(1))
    x0, _ = cache.crop_batch(indices, torch.Generator().manual_seed(step_seed(3, 0, 0, 0, 3)))
    x1, _ = cache.crop_batch(indices, torch.Generator().manual_seed(step_seed(3, 0, 1, 0, 3)))
    again, _ = cache.crop_batch(indices, torch.Generator().manual_seed(step_seed(3, 0, 0, 0, 3)))
    assert torch.equal(x0, again) and not torch.equal(x0, x1)


def test_training_reads_random_crops_and_resumes_exactly(long_cache, tmp_path, monkeypatch):
    root, _, cache = long_cache
    config = toy_config("linear", data={"dataset": str(root), "max_length": L}, batch_size=1, epochs=2,
                        resume_every=2)
    drawn = []
    crop_starts = type(cache).crop_starts

    def spy(self, indices, generator):
        drawn.append(crop_starts(self, indices, generator))
        return drawn[-1]

    monkeypatch.setattr(type(cache), "crop_starts", spy)
    _, straight = finetune(config, tmp_path / "straight", table=cache)
    per_epoch = len(drawn) // 2
    assert per_epoch >= 4 and any((d != 0).any() for d in drawn)  # the steps trained on crops, not first windows
    with pytest.raises(Kill):  # epoch 2, step 4: resumes from its step-2 checkpoint
        finetune(config, tmp_path / "killed", callback=KillAt(per_epoch + 4), table=cache)
    assert (tmp_path / "killed" / "state.pt").exists()
    _, resumed = finetune(config, tmp_path / "killed", table=cache)
    assert _comparable(resumed) == _comparable(straight)


def test_max_seconds_bounds_the_kept_clip_and_is_part_of_the_cache_key(long_cache, tmp_path):
    root, home, cache = long_cache
    short, _ = prepare_cache(root, max_length=L, home=home, max_seconds=1.5)  # 150 frames: windows at 0 and 50
    assert short.path != cache.path and short.path.parent == cache.path.parent
    assert short.windows.tolist() == [2] * len(short) and short.frames.tolist() == [150] * len(short)
    assert np.array_equal(short.features, cache.features)  # the first window is the same
    wave = load_mono_16k(root / short.paths[0])
    frames = normalize(log_mel(wave, short.feature_config), short.feature_config).half()
    assert torch.equal(torch.from_numpy(np.array(short.extra[0])), frames[50:150])
    again, built = prepare_cache(root, max_length=L, home=home, max_seconds=1.5)
    assert not built and again.path == short.path
    result = run("prepare", root, "--home", home, "-j", "1", "--max-length", L, "--max-seconds", "1.5")
    assert result.exit_code == 0 and "already prepared" in result.output, result.output
    shown = run("finetune", "--dataset", root, "--max-seconds", "1.5", "--print-config")
    assert shown.exit_code == 0, shown.output
    assert yaml.safe_load(shown.stdout)["data"]["max_seconds"] == 1.5
    assert run("finetune", "--dataset", root, "--max-seconds", "0", "--print-config").exit_code != 0
    for command in ("prepare", "finetune"):
        assert "--max-seconds" in run(command, "--help").stdout, command


def test_short_clips_read_as_before_and_draw_nothing(tmp_path):
    root = long_folder(tmp_path / "mine", seconds=0.5)
    cache, _ = prepare_cache(root, max_length=L, home=tmp_path / "home")
    assert cache.windows.tolist() == [1] * len(cache)
    indices = np.array([4, 1, 1, 9])
    generator = torch.Generator().manual_seed(5)
    before = generator.get_state().clone()
    x, y = cache.crop_batch(indices, generator)
    expected_x, expected_y = cache.batch(indices)
    assert torch.equal(x, expected_x) and torch.equal(y, expected_y)
    assert torch.equal(generator.get_state(), before)


def test_a_runs_max_seconds_travels_to_predict_embed_and_both_exports(long_cache, tmp_path):
    """A run trained on clips kept to their first 1.5 s scores only that much of a file wherever
    its model goes: predict equals the run's own scoring of the cached clips, embed sees two
    windows (not three), and both exports record the bound."""
    import json

    from softmoa_cli.engine.embed import Embedder
    from softmoa_cli.engine.export import export_run
    from softmoa_cli.engine.models.pretrained import load_pretrained
    from softmoa_cli.engine.predict import predictor_for
    from helpers import load_run
    from softmoa_cli.engine.distributed import World
    from softmoa_cli.engine.devices import Precision
    from softmoa_cli.engine.scoring.evaluation import score_indices

    root, home, _ = long_cache
    table, _ = prepare_cache(root, max_length=L, home=home, max_seconds=1.5)
    folder, _ = finetune(toy_config("soft", epochs=1, batch_size=4), tmp_path / "run", table=table)
    model, _, features = load_run(folder)
    assert features.max_seconds == 1.5
    indices = np.arange(len(table))
    expected = score_indices(model, table, indices, 8, World(), Precision("fp32", torch.device("cpu")))
    predictor = predictor_for(run=folder)
    got = [result.scores for result in predictor.predict_files([root / path for path in table.paths], top_k=2)]
    assert torch.allclose(torch.stack(got).double(), expected.probabilities, atol=1e-6)
    wave = load_mono_16k(root / table.paths[0])  # 3 s
    embedded = Embedder(model, features, torch.device("cpu")).embed(root / table.paths[0])
    assert len(embedded.windows) == 2 and embedded.ends[-1] == pytest.approx(1.5)
    assert torch.equal(predictor.scores(wave), predictor.scores(wave[:400 + 149 * 160]))
    export_run(folder, "standalone", tmp_path / "standalone")
    assert load_pretrained(tmp_path / "standalone").extra["features"]["max_seconds"] == 1.5
    export_run(folder, "onnx", tmp_path / "onnx")
    assert json.loads((tmp_path / "onnx" / "model.json").read_text())["features"]["max_seconds"] == 1.5
