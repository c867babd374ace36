"""`softmoa predict` inputs from anywhere (standard input, folders), batched prediction across
files equal to one file at a time, and timelines that find known events in a long recording."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from helpers import tiny_ast_config, write_wav
from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.models.ast import AST
from softmoa_cli.engine.models.pretrained import Pretrained, save_model
from softmoa_cli.engine.predict import Predictor

LABELS = ["zero", "one", "two", "three", "four"]


@pytest.fixture
def classifier(tmp_path):
    torch.manual_seed(0)
    model = AST(tiny_ast_config())
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1.0)
    return save_model(Pretrained(model, LABELS, False, "test"), tmp_path / "model")


def predict(*args, input=None):
    return CliRunner().invoke(build_app(), ["predict", *map(str, args)], input=input)


def scores_by_file(stdout: str) -> dict[str, dict[str, float]]:
    return {entry["file"]: {p["label"]: p["score"] for p in entry["predictions"]} for entry in json.loads(stdout)}


# --- input from anywhere ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt,rate,channels", [("WAV", 44_100, 2), ("FLAC", 8_000, 1)])
def test_stdin_is_scored_like_the_same_file(classifier, tmp_path, fmt, rate, channels):
    path = tmp_path / f"clip.{fmt.lower()}"
    t = np.arange(int(1.3 * rate)) / rate
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * channels, axis=1), rate, format=fmt)
    from_file = predict(path, "-c", classifier, "--json", "-k", "5")
    from_stdin = predict("-", "-c", classifier, "--json", "-k", "5", input=path.read_bytes())
    assert from_file.exit_code == 0 and from_stdin.exit_code == 0, from_stdin.output
    (name, scores), = scores_by_file(from_stdin.stdout).items()
    assert name == "<stdin>" and scores == scores_by_file(from_file.stdout)[str(path)]


def test_bad_stdin_is_one_error_line(classifier):
    result = predict("-", "-c", classifier, "--json", input=b"not audio at all")
    assert result.exit_code == 1 and json.loads(result.stdout) == []
    assert "<stdin>: not a readable audio file" in result.stderr and "Traceback" not in result.stderr
    empty = predict("-", "-c", classifier, input=b"")
    assert empty.exit_code == 1 and "<stdin>: empty input" in empty.stderr


def test_a_folder_scores_every_audio_file_under_it_recursively_sorted(classifier, tmp_path):
    root = tmp_path / "recordings"
    names = ["b.wav", "a/z.flac", "a/b/c.wav", "A.ogg", "c/d.WAV"]
    for k, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.2 * np.random.default_rng(k).standard_normal(4000 + 900 * k), 16000,
                 format={"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[name.rsplit(".", 1)[1].lower()])
    (root / "notes.txt").write_text("not audio")
    (root / "a" / "readme.md").write_text("no")
    expected = sorted(root / name for name in names)
    result = predict(root, "-c", classifier, "--json")
    assert result.exit_code == 0, result.output
    assert list(scores_by_file(result.stdout)) == [str(p) for p in expected]
    one_by_one = predict(*expected, "-c", classifier, "--json")
    assert scores_by_file(one_by_one.stdout) == scores_by_file(result.stdout)

    (tmp_path / "empty").mkdir()
    mixed = predict(expected[0], tmp_path / "empty", "-c", classifier, "--json")
    assert mixed.exit_code == 1 and list(scores_by_file(mixed.stdout)) == [str(expected[0])]
    assert "empty: a folder with no audio files" in mixed.stderr


# --- batched, parallel inference --------------------------------------------------------------


def test_batched_prediction_equals_one_file_at_a_time_in_order_with_bad_files_in_place(classifier, tmp_path):
    from softmoa_cli.engine.models.pretrained import load_pretrained

    model = load_pretrained(classifier).model
    lengths = [0.3, 2.25, 1.0, 3.7, 0.01, 5.2, 1.6]  # 1 to 6 windows of 100 frames
    paths = [write_wav(tmp_path / f"clip{k}.wav", seconds, seed=k) for k, seconds in enumerate(lengths)]
    (tmp_path / "notes.wav").write_text("not audio")
    inputs = [*paths[:3], tmp_path / "missing.wav", *paths[3:6], tmp_path / "notes.wav", paths[6]]
    single = Predictor(model, LABELS, batch_size=1, workers=0)
    for batch_size, workers in [(3, 2), (7, 1), (64, 3)]:
        batched = Predictor(model, LABELS, batch_size=batch_size, workers=workers)
        results = list(batched.predict_files(inputs, top_k=5))
        assert [r.file for r in results] == [str(p) for p in inputs]
        assert [bool(r.error) for r in results] == [False] * 3 + [True] + [False] * 3 + [True, False]
        assert "file not found" in results[3].error and "not a readable audio file" in results[7].error
        for path, result in zip(inputs, results):
            if not result.error:
                expected = single.scores(load_mono_16k(path))
                assert torch.allclose(result.scores, expected, atol=1e-6, rtol=0), (path, batch_size)
                assert result.predictions == single.predict(path).predictions or \
                    [l for l, _ in result.predictions] == [l for l, _ in single.predict(path).predictions]


def test_batch_size_and_workers_flags(classifier, tmp_path):
    paths = [write_wav(tmp_path / f"clip{k}.wav", 0.5 + k, seed=k) for k in range(4)]
    a = predict(*paths, "-c", classifier, "--json", "--batch-size", "1", "--workers", "0")
    b = predict(*paths, "-c", classifier, "--json", "--batch-size", "5", "--workers", "3")
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert list(scores_by_file(a.stdout)) == [str(p) for p in paths]
    for name, scores in scores_by_file(a.stdout).items():
        assert scores == pytest.approx(scores_by_file(b.stdout)[name], abs=2e-6)
