"""`softmoa predict`: real clips scored, bad files reported one line each and the others still
scored; inputs from anywhere (standard input, folders); batched prediction across files equal
to one file at a time; timelines that find known events in a long recording."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tiny_ast_config, write_wav
from typer.testing import CliRunner

from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.classifier import Classifier, model_features
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig, windows
from softmoa_cli.engine.models.ast import AST
from softmoa_cli.engine.models.pretrained import Pretrained, save_model
from softmoa_cli.engine.predict import Predictor
from softmoa_cli.engine.task import MULTI, SINGLE


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


LABELS = ["zero", "one", "two", "three", "four"]


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
    single = Predictor(Classifier(model, LABELS, SINGLE, model_features(model)), batch_size=1, workers=0)
    for batch_size, workers in [(3, 2), (7, 1), (64, 3)]:
        batched = Predictor(Classifier(model, LABELS, SINGLE, model_features(model)), batch_size=batch_size,
                            workers=workers)
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


# --- timelines --------------------------------------------------------------------------------

RATE = 16_000
TONES = {"low": 500.0, "high": 2500.0}


def sound(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A tone of one class (slightly detuned, random level) over faint noise, or the faint noise alone."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = 0.01 * rng.standard_normal(t.size)
    if kind == "quiet":
        return noise
    return noise + rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * TONES[kind] * rng.uniform(0.97, 1.03) * t)


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    """A tiny single-label run trained on 1 s clips of two tones and of quiet noise."""
    from softmoa_cli.engine.config import build_config
    from softmoa_cli.engine.train import finetune

    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for kind in ("low", "high", "quiet"):
        for k in range(40):
            sf.write(root / f"{kind}{k}.wav", sound(kind, 1.0, rng), RATE)
            rows.append(f"{kind}{k}.wav,{kind},{'train' if k < 30 else 'valid' if k < 35 else 'test'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    config = build_config({
        "data": {"dataset": str(root / "labels.csv"), "max_length": 100},
        "model": {"checkpoint": "random", "random": {"dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64}},
        "method": {"name": "full"}, "training": {"epochs": 8, "batch_size": 8, "lr": 3e-3}})
    run, metrics = finetune(config, root / "run")
    assert metrics.to_dict()["folds"]["all"]["test"]["accuracy"] == 1.0, metrics
    # silence 2 s, low tone 3 s, silence 2 s, high tone 2.5 s, silence 2 s: 11.5 s
    plan = [("quiet", 2.0), ("low", 3.0), ("quiet", 2.0), ("high", 2.5), ("quiet", 2.0)]
    long = np.concatenate([sound(kind, seconds, rng) for kind, seconds in plan])
    sf.write(root / "long.wav", long, RATE)
    return run, root / "long.wav"


def test_timeline_recovers_known_events_in_order_within_one_hop(tone_run):
    run, long = tone_run
    hop = 0.5
    result = predict(long, "--run", run, "--timeline", "--hop", hop, "--json", "-k", "2")
    assert result.exit_code == 0, result.output
    entry, = json.loads(result.stdout)
    starts = [w["start"] for w in entry["timeline"]]
    assert starts == pytest.approx([hop * k for k in range(len(starts))])
    assert all(w["end"] - w["start"] == pytest.approx(1.0) for w in entry["timeline"][:-1])
    assert entry["timeline"][-1]["end"] == pytest.approx(11.5, abs=0.03) and len(entry["timeline"][0]["predictions"]) == 2
    events = [s for s in entry["segments"] if s["label"] != "quiet"]
    assert [s["label"] for s in events] == ["low", "high"], entry["segments"]
    for segment, (start, end) in zip(events, [(2.0, 5.0), (7.0, 9.5)]):
        assert abs(segment["start"] - start) <= hop and abs(segment["end"] - end) <= hop, segment
        assert 0.5 <= segment["score"] <= 1.0
    quiet = [s for s in entry["segments"] if s["label"] == "quiet"]
    assert quiet[0]["start"] == 0.0 and quiet[-1]["end"] == pytest.approx(11.5, abs=0.03)
    # the file's own prediction is still the window rule's mean; segments are sorted by time
    assert entry["predictions"][0]["label"] in {"low", "high", "quiet"}
    assert [s["start"] for s in entry["segments"]] == sorted(s["start"] for s in entry["segments"])
    # one label per stretch of time: the segments of a single-label run never overlap
    assert all(b["start"] >= a["end"] for a, b in zip(entry["segments"], entry["segments"][1:])), entry["segments"]

    # A smaller window (zero-padded to the model's input: this model never saw padding, so only
    # the times are checked), the CSV and the table.
    small = predict(long, "--run", run, "--timeline", "--window", "0.5", "--hop", "0.25", "--csv")
    assert small.exit_code == 0, small.output
    lines = small.stdout.splitlines()
    assert lines[0] == "file,kind,start,end,label,score"
    assert sum(",clip," in line for line in lines) == 3 and any(",segment," in line for line in lines)
    windows = [line.split(",") for line in lines if ",window," in line]
    assert len(windows) == 3 * 45  # starts 0, 0.25, ..., 11.0; top 3 labels each
    assert float(windows[3][2]) == 0.25 and float(windows[3][3]) == 0.75
    table = predict(long, "--run", run, "--timeline")
    assert table.exit_code == 0 and "segment label" in table.stdout and "top label" in table.stdout
    strict = predict(long, "--run", run, "--timeline", "--threshold", "0.99")
    assert strict.exit_code == 0 and "segments: none above threshold" in strict.stdout


def test_timeline_of_a_multi_label_checkpoint_and_bad_windows(tmp_path):
    torch.manual_seed(0)
    model = AST(tiny_ast_config())
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1.0)
    folder = save_model(Pretrained(model, LABELS, MULTI, "test"), tmp_path / "tagger")
    clip = write_wav(tmp_path / "clip.wav", 3.0)
    result = predict(clip, "-c", folder, "--timeline", "--json", "--threshold", "0.0")
    assert result.exit_code == 0, result.output
    entry, = json.loads(result.stdout)
    assert [(w["start"], w["end"]) for w in entry["timeline"]] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5),
                                                                  (2.0, 2.98)]
    # threshold 0: every label is above it in every window, one segment per label over the whole file
    assert sorted(s["label"] for s in entry["segments"]) == sorted(LABELS)
    assert all(s["start"] == 0.0 and s["end"] == 2.98 for s in entry["segments"])
    too_long = predict(clip, "-c", folder, "--timeline", "--window", "1.5")
    assert too_long.exit_code != 0 and "at most the model's input, 1 s" in too_long.stderr
    assert predict(clip, "-c", folder, "--hop", "0.2").exit_code != 0  # --hop without --timeline


def test_timeline_segments_give_each_stretch_one_label_or_each_label_its_own_stretches():
    """Windows 0-1 s, 0.5-1.5 s, 1-2 s: the old per-window merge gave overlapping "a 0-1" and
    "b 0.5-2"; per stretch, each half second takes the mean of the windows covering it."""
    from softmoa_cli.engine.predict import timeline_segments

    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.1, 0.9]], dtype=torch.float64)
    bounds = [(0, 100), (50, 150), (100, 200)]
    single = timeline_segments(probs, bounds, torch.full((2,), 0.5, dtype=torch.float64), SINGLE)
    assert [(a, b, label) for a, b, label, _ in single] == [(0, 100, 0), (100, 200, 1)]
    assert [score for *_, score in single] == pytest.approx([(0.9 + 0.65) / 2, (0.75 + 0.9) / 2])
    multi = timeline_segments(probs, bounds, torch.tensor([0.3, 0.3], dtype=torch.float64), MULTI)
    assert [(a, b, label) for a, b, label, _ in multi] == [(0, 100, 0), (50, 200, 1)]  # overlap across labels only
    for label in (0, 1):  # never within one label
        own = [(a, b) for a, b, found, _ in multi if found == label]
        assert all(later[0] >= earlier[1] for earlier, later in zip(own, own[1:]))
    gapped = timeline_segments(probs[:2], [(0, 50), (100, 150)], torch.full((2,), 0.1, dtype=torch.float64), SINGLE)
    assert [(a, b) for a, b, *_ in gapped] == [(0, 50), (100, 150)]  # a hop longer than the window: no bridging
