"""`softmoa predict`: real clips scored, bad files reported one line each, others still scored."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf
import torch
from typer.testing import CliRunner

from softmoa_cli.engine.classifier import Classifier, model_features
from softmoa_cli.engine.task import SINGLE
from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.data.features import FeatureConfig, windows
from softmoa_cli.engine.predict import Predictor


def bad_files(folder):
    folder.mkdir()
    sf.write(folder / "nan.wav", np.full(800, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(folder / "no_samples.wav", np.zeros(0, dtype=np.float32), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("not audio")
    return {"nan.wav": "NaN", "no_samples.wav": "zero samples", "empty.wav": "empty file",
            "notes.wav": "not a readable audio file", "missing.wav": "file not found"}


def test_predict_json_keeps_good_files_and_reports_each_bad_one(classifier, fsdd_clips, tmp_path):
    problems = bad_files(tmp_path / "bad")
    paths = [str(fsdd_clips[0]), *(str(tmp_path / "bad" / name) for name in problems), str(fsdd_clips[1])]
    result = CliRunner().invoke(build_app(), ["predict", *paths, "--checkpoint", str(classifier), "--json", "-k", "3"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert [entry["file"] for entry in document] == [str(fsdd_clips[0]), str(fsdd_clips[1])]
    for entry in document:
        scores = [p["score"] for p in entry["predictions"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6
        assert {p["label"] for p in entry["predictions"]} <= {"zero", "one", "two", "three", "four"}
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == len(problems)
    for name, reason in problems.items():
        assert any(name in line and reason in line for line in error_lines), (name, error_lines)
    assert "Traceback" not in result.stderr


def test_predict_table_output(classifier, fsdd_clips):
    result = CliRunner().invoke(build_app(), ["predict", str(fsdd_clips[2]), "-c", str(classifier), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert fsdd_clips[2].name in result.stdout and "score" in result.stdout


def test_missing_checkpoint_is_one_line(fsdd_clips, tmp_path):
    result = CliRunner().invoke(build_app(), ["predict", str(fsdd_clips[0]), "-c", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "checkpoint not found" in result.stderr


def test_long_files_average_windows_with_the_last_one_end_aligned(classifier, tmp_path):
    from softmoa_cli.engine.data.features import log_mel, normalize
    from softmoa_cli.engine.models.pretrained import load_pretrained

    model = load_pretrained(classifier).model
    predictor = Predictor(Classifier(model, list("abcde"), SINGLE, model_features(model)), batch_size=2)  # three windows: two forward passes
    wave = torch.randn(16000 * 2 + 4000) * 0.1  # 2.25 s: 223 frames
    config = FeatureConfig(max_length=100)
    frames = log_mel(wave, config)
    assert frames.shape[0] == 223
    # Windows at frames 0, 100 and 123 (the last one ends with the clip: no padding).
    expected_windows = torch.stack([normalize(frames[s:s + 100], config) for s in (0, 100, 123)]).half()
    assert torch.equal(windows(wave, config), expected_windows)
    with torch.no_grad():
        expected = model.eval()(expected_windows.float()).softmax(-1).mean(0)
    assert torch.allclose(predictor.scores(wave), expected, atol=1e-6)


def test_clip_shorter_than_one_frame_is_padded_and_scored(classifier, tmp_path):
    import soundfile as sf

    from softmoa_cli.engine.models.pretrained import load_pretrained

    predictor = Predictor(Classifier.from_pretrained(load_pretrained(classifier)))
    sf.write(tmp_path / "blip.wav", np.full(160, 0.1, dtype=np.float32), 16000)  # 10 ms: under one 25 ms frame
    sf.write(tmp_path / "ok.wav", np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 16000)
    results = list(predictor.predict_files([tmp_path / "blip.wav", tmp_path / "ok.wav"], top_k=5))
    assert [r.error for r in results] == [None, None]
    assert abs(sum(score for _, score in results[0].predictions) - 1) < 1e-4


def test_an_hour_of_audio_goes_through_in_bounded_batches(classifier):
    from softmoa_cli.engine.models.pretrained import load_pretrained

    model = load_pretrained(classifier).model
    predictor = Predictor(Classifier(model, list("abcde"), SINGLE, model_features(model)), batch_size=16)
    sizes = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    wave = torch.zeros(16000 * 60)  # one minute at 100 frames per window: 60 windows
    predictor.scores(wave)
    assert sum(sizes) == 60 and max(sizes) == 16


def test_predict_uses_a_run_and_by_default_the_latest_one(fsdd_clips, tmp_path):
    from helpers import toy_config, toy_table

    from softmoa_cli.engine.train import finetune

    run, _ = finetune(toy_config("soft", epochs=1), tmp_path / "runs" / "toy-soft", table=toy_table())
    app = build_app()
    by_run = CliRunner().invoke(app, ["predict", str(fsdd_clips[0]), "--run", str(run), "--json", "-k", "4"])
    latest = CliRunner().invoke(app, ["predict", str(fsdd_clips[0]), "--runs", str(tmp_path / "runs"),
                                      "--json", "-k", "4"])
    assert by_run.exit_code == latest.exit_code == 0, by_run.output + latest.output
    assert json.loads(by_run.stdout) == json.loads(latest.stdout)
    predictions = json.loads(by_run.stdout)[0]["predictions"]
    assert sorted(p["label"] for p in predictions) == ["class0", "class1", "class2", "class3"]
    assert abs(sum(p["score"] for p in predictions) - 1.0) < 1e-4
    nothing = CliRunner().invoke(app, ["predict", str(fsdd_clips[0]), "--runs", str(tmp_path / "empty")])
    assert nothing.exit_code == 2 and f"no finished run under {tmp_path / 'empty'} (given)" in nothing.stderr
    assert "SOFTMOA_RUNS" not in os.environ  # --runs holds for its command only
