"""``softmoa embed``: embeddings equal the model's pooled features (the head's
input, averaged over the windows of the window rule), the same audio gives the same row, per
window with their times, an intermediate block, folders, bad files, and AST checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import run, run_ok, tiny_ast_config, toy_config, toy_table, write_wav
from softmoa_cli.engine.task import SINGLE
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import window_starts, windows
from softmoa_cli.engine.models.ast import AST
from softmoa_cli.engine.models.pretrained import Pretrained, save_model


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A finished Soft-MoA run of one epoch on the toy table (48 frames a window, mean pooling)."""
    from softmoa_cli.engine.train import finetune

    run_dir, _ = finetune(toy_config("soft", epochs=1), tmp_path_factory.mktemp("embed") / "runs" / "toy-soft",
                          table=toy_table())
    return run_dir


@pytest.fixture(scope="module")
def run_model(toy_run):
    from helpers import load_run

    model, _, features = load_run(toy_run)
    return model.eval(), features


@pytest.fixture
def classifier(tmp_path):
    """A saved tiny AST classifier (100 frames a window, pooling CLS and DIST)."""
    torch.manual_seed(0)
    return save_model(Pretrained(AST(tiny_ast_config()), list("abcde"), SINGLE, "test"), tmp_path / "model")


@pytest.fixture
def clips(tmp_path):
    """Three files: under one window, a few windows (48 frames each), and 2.3 s."""
    return [write_wav(tmp_path / "audio" / name, seconds=seconds, seed=k)
            for k, (name, seconds) in enumerate([("a.wav", 0.3), ("b.wav", 1.1), ("c.wav", 2.3)])]


def embed(*args):
    """``softmoa embed ARGS`` (exit 0), its npz loaded."""
    run_ok("embed", *args)
    return np.load(args[args.index("--out") + 1])


def tokens_to_block(model, x, layer):
    """Block ``layer``'s output tokens, computed by hand (the embeddings, then blocks 1..layer)."""
    patches = model.patch_embed(x.transpose(1, 2).unsqueeze(1)).flatten(2).transpose(1, 2)
    special = torch.cat([model.cls_token, model.dist_token], dim=1).expand(x.shape[0], -1, -1)
    tokens = torch.cat([special, patches], dim=1) + model.pos_embed
    for block in model.blocks[:layer]:
        tokens = block(tokens)
    return tokens


@torch.no_grad()
def direct(model, features, path, layer=None):
    """A file's embedding computed here: mean-pooled tokens per window, then the mean of the windows."""
    x = windows(load_mono_16k(path), features).float()
    tokens = model.forward_features(x) if layer is None else tokens_to_block(model, x, layer)
    return tokens.mean(dim=1).double().mean(dim=0).numpy()


def test_embeddings_equal_the_models_pooled_features(toy_run, run_model, clips, tmp_path):
    model, features = run_model
    saved = embed(*clips, "--run", toy_run, "--out", tmp_path / "e.npz")
    assert list(saved["files"]) == [str(c) for c in clips]
    assert saved["embeddings"].shape == (3, 32) and saved["embeddings"].dtype == np.float32
    for row, clip in zip(saved["embeddings"], clips):
        assert np.abs(row - direct(model, features, clip)).max() < 1e-5
    assert len(windows(load_mono_16k(clips[2]), features)) > 1  # the averaging over windows is exercised
    with torch.no_grad():  # the pooled vector is what the head sees: norm and Linear of it give the logits
        x = windows(load_mono_16k(clips[0]), features).float()
        pooled = torch.from_numpy(saved["embeddings"][:1])
        logits = model.head.fc(model.head.norm(pooled))
        assert torch.allclose(logits, model(x), atol=1e-5)


def test_the_same_audio_gives_the_same_row(toy_run, clips, tmp_path):
    copy = tmp_path / "copy.wav"
    copy.write_bytes(clips[2].read_bytes())
    saved = embed(clips[2], clips[0], clips[2], copy, "--run", toy_run, "--out", tmp_path / "e.npz",
                  "--batch-size", "1")
    rows = saved["embeddings"]
    assert np.array_equal(rows[0], rows[2]) and np.array_equal(rows[0], rows[3])
    again = embed(clips[2], "--run", toy_run, "--out", tmp_path / "again.npz")  # another batch size
    assert np.abs(again["embeddings"][0] - rows[0]).max() < 1e-5


def test_per_window_times_and_counts_follow_the_window_rule(classifier, clips, tmp_path):
    saved = embed(clips[2], clips[0], "--checkpoint", classifier, "--per-window", "--out", tmp_path / "w.npz")
    starts = window_starts(228, 100)  # 2.3 s: 1 + (36800 - 400) // 160 frames
    assert starts == [0, 100, 128]
    assert list(saved["window_file"]) == [0, 0, 0, 1]
    assert np.allclose(saved["window_start"], [0.0, 1.0, 1.28, 0.0])
    assert np.allclose(saved["window_end"], [1.0, 2.0, 2.28, 0.28])  # 0.3 s: 28 frames of 10 ms
    assert saved["window_embeddings"].shape == (4, 64)
    assert np.allclose(saved["embeddings"][0], saved["window_embeddings"][:3].mean(axis=0), atol=1e-6)
    assert np.array_equal(saved["embeddings"][1], saved["window_embeddings"][3])


def test_an_intermediate_block(toy_run, run_model, clips, tmp_path):
    model, features = run_model
    first = embed(*clips, "--run", toy_run, "--layer", "1", "--out", tmp_path / "l1.npz")["embeddings"]
    last = embed(*clips, "--run", toy_run, "--out", tmp_path / "last.npz")["embeddings"]
    assert np.abs(first - last).max() > 1e-3
    for row, clip in zip(first, clips):
        assert np.abs(row - direct(model, features, clip, layer=1)).max() < 1e-5
    block2 = embed(clips[0], "--run", toy_run, "--layer", "2", "--out", tmp_path / "l2.npz")["embeddings"][0]
    assert np.abs(block2 - direct(model, features, clips[0], layer=2)).max() < 1e-5  # no final norm
    too_deep = run("embed", clips[0], "--run", toy_run, "--layer", "3", "--out", tmp_path / "l3.npz")
    assert too_deep.exit_code == 2 and "blocks 1..2" in too_deep.stderr
    assert not (tmp_path / "l3.npz").exists()


def test_a_folder_takes_every_audio_file_under_it_sorted(classifier, tmp_path):
    folder = tmp_path / "set"
    names = ["z.wav", "a/b.wav", "a/c/d.flac", "m.WAV"]
    for k, name in enumerate(names):
        write_wav(folder / name, seed=k)
    sf.write(folder / "a" / "c" / "d.flac", np.zeros(4000, np.float32) + 0.1, 16000, format="FLAC")
    (folder / "notes.txt").write_text("not audio")
    single = write_wav(tmp_path / "single.wav", seed=9)
    saved = embed(single, folder, "--checkpoint", classifier, "--out", tmp_path / "f.npz")
    assert list(saved["files"]) == [str(single)] + [str(folder / n) for n in sorted(names)]
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run("embed", empty, "--checkpoint", classifier, "--out", tmp_path / "n.npz")
    assert nothing.exit_code == 2 and "no audio files" in nothing.stderr


def test_a_bad_file_is_named_and_the_others_are_written(classifier, clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    result = run("embed", clips[0], bad, clips[1], "--checkpoint", classifier, "--out", tmp_path / "b.npz")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.wav" in errors[0] and "not a readable audio file" in errors[0]
    saved = np.load(tmp_path / "b.npz")
    assert list(saved["files"]) == [str(clips[0]), str(clips[1])] and saved["embeddings"].shape == (2, 64)
    assert "embedded 2 of 3 files (d = 64) ->" in result.stdout
    only_bad = run("embed", bad, "--checkpoint", classifier, "--out", tmp_path / "none.npz")
    assert only_bad.exit_code == 1 and not (tmp_path / "none.npz").exists()


def test_a_checkpoint_embeds_by_its_heads_pooling(classifier, fsdd_clips, tmp_path):
    from softmoa_cli.engine.data.features import FeatureConfig
    from softmoa_cli.engine.models.pretrained import load_pretrained

    model = load_pretrained(classifier).model.eval()
    assert model.head.pool == "cls_dist"
    saved = embed(*fsdd_clips[:2], "--checkpoint", classifier, "--out", tmp_path / "c.npz")
    for row, clip in zip(saved["embeddings"], fsdd_clips[:2]):
        with torch.no_grad():  # the mean of [CLS] and [DIST] after the final norm, averaged over windows
            x = windows(load_mono_16k(clip), FeatureConfig(max_length=100)).float()
            expected = model.forward_features(x)[:, :2].mean(dim=1).double().mean(dim=0).numpy()
        assert np.abs(row - expected).max() < 1e-5
