"""Live audio: raw 16 kHz s16le PCM in chunks of any size through ``LiveTimeline`` gives the
file timeline's windows, frames bit for bit and scores to 1e-5, each window as soon as its audio
is in; ``softmoa predict --stream -`` prints them as JSON lines while its input still flows; the
server's WebSocket route sends the same records."""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run, run_ok, tiny_ast_config

from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig, clip_frames
from softmoa_cli.engine.models.ast import AST
from softmoa_cli.engine.models.pretrained import Pretrained, save_model
from softmoa_cli.engine.predict import Timeline, predictor_for
from softmoa_cli.engine.predict.live_frames import LiveFrames, LiveSamples
from softmoa_cli.engine.task import MULTI

REPO = Path(__file__).resolve().parents[1]


def recording(clips: list[Path], path: Path) -> tuple[Path, bytes]:
    """The clips one after another at 16 kHz as a 16-bit WAV at ``path``, and its PCM bytes."""
    sf.write(path, torch.cat([load_mono_16k(clip) for clip in clips]).numpy(), 16_000, subtype="PCM_16")
    return path, sf.read(path, dtype="int16")[0].tobytes()


def chunked(data: bytes, sizes) -> list[bytes]:
    """``data`` cut into pieces of the sizes ``sizes`` yields, in turn (the last piece: what is left)."""
    pieces, at = [], 0
    for size in sizes:
        if at >= len(data):
            break
        pieces.append(data[at:at + size])
        at += size
    return pieces + ([data[at:]] if at < len(data) else [])


def odd_sizes(seed: int = 0):
    """Chunk sizes of 1 to 4,999 bytes, most of them odd: samples split across chunks."""
    rng = random.Random(seed)
    while True:
        yield rng.randrange(1, 5_000)


def streamed(live, pieces: list[bytes]) -> list[dict]:
    found = [w.to_dict() for piece in pieces for w in live.feed(piece)]
    return found + [w.to_dict() for w in live.end()]


def file_timeline(predictor, path: Path, timeline: Timeline, top_k: int) -> list[dict]:
    result, = predictor.predict_files([path], top_k, timeline)
    return [w.to_dict() for w in result.timeline]


def assert_same_windows(got: list[dict], expected: list[dict]) -> None:
    """The same windows (start, end, labels in order) with scores within 1e-5."""
    assert [(w["start"], w["end"]) for w in got] == [(w["start"], w["end"]) for w in expected]
    for mine, theirs in zip(got, expected):
        assert [p["label"] for p in mine["predictions"]] == [p["label"] for p in theirs["predictions"]]
        assert np.allclose([p["score"] for p in mine["predictions"]], [p["score"] for p in theirs["predictions"]],
                           rtol=0, atol=1e-5)


@pytest.fixture
def long_recording(fsdd_clips, tmp_path) -> tuple[Path, bytes]:
    """The four FSDD clips twice over (about 6 s), as a 16 kHz WAV and its PCM."""
    return recording(fsdd_clips * 2, tmp_path / "long.wav")


@pytest.fixture
def tagger(tmp_path) -> Path:
    """A tiny multi-label AST (5 labels, 1 s windows) saved as a checkpoint folder."""
    torch.manual_seed(1)
    model = AST(tiny_ast_config())
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1.0)
    return save_model(Pretrained(model, ["zero", "one", "two", "three", "four"], MULTI, "test"), tmp_path / "tagger")


# --- the engine -------------------------------------------------------------------------------


def test_live_frames_equal_the_files_bit_for_bit_whatever_the_chunks(long_recording):
    path, pcm = long_recording
    expected = clip_frames(load_mono_16k(path))
    for sizes in (iter([len(pcm)]), iter([1, 1, 1, 7, 333, 4097] * 100), odd_sizes()):
        live, got = LiveFrames(FeatureConfig()), []
        for k, piece in enumerate(chunked(pcm, sizes)):
            live.feed(piece)
            if k % 3 == 0:  # frames taken now and then, as windows complete
                got.append(live.take())
        live.end()
        got.append(live.take())
        assert torch.equal(torch.cat(got), expected)


@pytest.mark.parametrize("extra", [0, 1, 159])  # whole frames, and a last partial frame of 1 or 159 samples
def test_live_samples_are_the_files_frame_by_frame_whatever_the_chunks(long_recording, extra):
    path, pcm = long_recording
    pcm = pcm[:len(pcm) - len(pcm) % 320] + pcm[:2 * extra]
    features = FeatureConfig(kind="waveform", normalize=True)
    expected = clip_frames(torch.from_numpy(np.frombuffer(pcm, dtype="<i2") / 32768.0).float(), features)
    live, got, ready = LiveSamples(features), [], []
    for k, piece in enumerate(chunked(pcm, odd_sizes())):
        live.feed(piece)
        ready.append(live.ready)
        if k % 3 == 0:
            got.append(live.take())
    assert ready[-1] == len(pcm) // 320  # while audio flows, whole frames only
    live.end()
    got.append(live.take())
    assert live.taken == -(-len(expected) // 160) and torch.equal(torch.cat(got), expected)


@pytest.mark.parametrize("window, hop", [(None, None), (0.5, 0.25), (0.3, 0.45)])
def test_a_stream_gives_the_file_timeline(classifier, long_recording, window, hop):
    """Default windows (the model's 1 s, hop 0.5 s), overlapping short ones, and a hop longer than
    the window (gaps); the last window padded past the end as in the file's timeline."""
    path, pcm = long_recording
    predictor = predictor_for(checkpoint=str(classifier))
    expected = file_timeline(predictor, path, Timeline(window, hop), 3)
    got = streamed(predictor.stream(Timeline(window, hop), 3), chunked(pcm, odd_sizes()))
    assert_same_windows(got, expected)
    assert expected[-1]["end"] == round(clip_frames(load_mono_16k(path)).shape[0] / 100, 3)


def test_one_clip_and_a_stream_ending_with_a_whole_window(classifier, fsdd_clips, tmp_path):
    """One FSDD clip; then a recording of exactly 250 frames: its windows 0-1 s ... 1.5-2.5 s end
    at the end, so no padded window follows, as in the file timeline."""
    predictor = predictor_for(checkpoint=str(classifier))
    path, pcm = recording(fsdd_clips[:1], tmp_path / "one.wav")
    assert_same_windows(streamed(predictor.stream(Timeline(0.25, 0.1)), chunked(pcm, odd_sizes(1))),
                        file_timeline(predictor, path, Timeline(0.25, 0.1), 5))
    samples = 400 + 249 * 160  # 250 frames
    path, pcm = recording(fsdd_clips * 2, tmp_path / "all.wav")
    sf.write(path, sf.read(path, dtype="int16")[0][:samples], 16_000, subtype="PCM_16")
    got = streamed(predictor.stream(Timeline()), chunked(pcm[:2 * samples], odd_sizes(2)))
    assert [(w["start"], w["end"]) for w in got] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5)]
    assert_same_windows(got, file_timeline(predictor, path, Timeline(), 5))


def test_each_window_comes_once_its_last_sample_is_in(classifier, long_recording):
    """Window k (1 s every 0.5 s) needs samples up to 160 * (50 k + 99) + 400: one byte short, nothing."""
    live = predictor_for(checkpoint=str(classifier)).stream(Timeline())
    _, pcm = long_recording
    sent = 0
    for k in range(3):
        needed = 2 * (160 * (50 * k + 99) + 400)  # bytes
        assert live.feed(pcm[sent:needed - 1]) == []
        (window,) = live.feed(pcm[needed - 1:needed])
        assert (window.start, window.end) == (k * 0.5, k * 0.5 + 1.0)
        sent = needed


def test_short_empty_and_odd_ends(classifier, tmp_path):
    predictor = predictor_for(checkpoint=str(classifier))
    live = predictor.stream(Timeline())
    assert live.feed(b"") == [] and live.end() == []  # nothing came: no window
    pcm = (np.arange(300, dtype="<i2") * 50).tobytes()  # 300 samples: under one 25 ms frame
    sf.write(tmp_path / "blip.wav", np.frombuffer(pcm, dtype="<i2"), 16_000, subtype="PCM_16")
    expected = file_timeline(predictor, tmp_path / "blip.wav", Timeline(), 5)
    live = predictor.stream(Timeline())
    assert live.feed(pcm + b"\x01") == []  # the last odd byte: half a sample, dropped at the end
    got = [w.to_dict() for w in live.end()]
    assert [(w["start"], w["end"]) for w in got] == [(0.0, 0.01)]
    assert_same_windows(got, expected)


def test_a_multi_label_stream_marks_the_labels_at_their_thresholds(tagger, long_recording):
    path, pcm = long_recording
    predictor = predictor_for(checkpoint=str(tagger), threshold=0.45)
    expected = file_timeline(predictor, path, Timeline(0.5, 0.25), 5)
    got = streamed(predictor.stream(Timeline(0.5, 0.25), 5), chunked(pcm, odd_sizes(3)))
    assert_same_windows(got, expected)
    assert all(w["positive"] == [p for p in w["predictions"] if p["score"] >= 0.45] for w in got)
    assert any(w["positive"] for w in got) and any(len(w["positive"]) < 5 for w in got)


# --- the command ------------------------------------------------------------------------------


def test_predict_stream_prints_each_window_while_the_input_still_flows(classifier, long_recording):
    path, pcm = long_recording
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", "from softmoa_cli.cli.app import main; main()", "predict",
                                "--stream", "-", "-c", str(classifier), "--window", "0.5", "--hop", "0.25", "-k", "3"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    try:
        first = 2 * (400 + 49 * 160)  # bytes of the first window, 0-0.5 s
        process.stdin.write(pcm[:first])
        process.stdin.flush()
        got = [json.loads(lines.get(timeout=120))]  # out while the input is still open
        assert (got[0]["start"], got[0]["end"]) == (0.0, 0.5)
        for piece in chunked(pcm[first:], odd_sizes(4)):
            process.stdin.write(piece)
        process.stdin.close()
        assert process.wait(timeout=120) == 0, process.stderr.read().decode()
        reader.join(timeout=30)
    finally:
        process.kill()
    got += [json.loads(line) for line in list(lines.queue)]
    expected = json.loads(run_ok("predict", path, "-c", classifier, "--timeline", "--window", "0.5", "--hop", "0.25",
                                 "-k", "3", "--json").stdout)[0]["timeline"]
    assert_same_windows(got, expected)


@pytest.mark.parametrize("args, words", [
    (["clip.wav", "--stream"], "give - as the only AUDIO, not clip.wav"),
    (["-", "-", "--stream"], "give - as the only AUDIO"),
    (["-", "--stream", "--csv"], "drop --csv"),
    (["-", "--stream", "--timeline"], "drop --timeline"),
])
def test_bad_stream_combinations_are_one_line(args, words):
    result = run("predict", *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


def test_a_threshold_on_a_single_label_stream_is_refused(classifier):
    result = run("predict", "-", "--stream", "-c", classifier, "--threshold", "0.3")
    assert result.exit_code == 2 and "--threshold" in result.stderr and "multi-label models only" in result.stderr


# --- the server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server (FastAPI's test client) of one tiny single-label run taking 0.96 s windows of 128
    mel bins, and the run's folder."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from helpers import toy_config, toy_table

    from softmoa_cli.engine.data.table import FeatureTable
    from softmoa_cli.engine.serve.batcher import Batcher
    from softmoa_cli.engine.serve.http import build_app
    from softmoa_cli.engine.serve.service import Service
    from softmoa_cli.engine.serve.tasks import TaskSet
    from softmoa_cli.engine.train import finetune

    toy = toy_table()
    table = FeatureTable("toy", toy.features.repeat(2, axis=1).repeat(4, axis=2), toy.labels, toy.label_names,
                         toy.split, toy.fold, FeatureConfig(num_mel_bins=128, max_length=96))
    folder = finetune(toy_config("soft", epochs=1, data={"max_length": 96}),
                      tmp_path_factory.mktemp("stream-run") / "soft", table=table)[0]
    tasks = TaskSet()
    tasks.add("soft", folder)
    service = Service(tasks, Batcher(max_batch=8, max_wait_ms=5))
    with TestClient(build_app(service)) as client:
        yield client, folder
    service.batcher.close()


def received(socket) -> tuple[list[dict], int]:
    """Every text frame the server sends until it closes, as JSON, and the close code."""
    frames = []
    while True:
        message = socket.receive()
        if message["type"] == "websocket.close":
            return frames, message["code"]
        frames.append(json.loads(message["text"]))


def test_the_websocket_route_streams_the_file_timeline(served, long_recording):
    client, folder = served
    path, pcm = long_recording
    with client.websocket_connect("/v1/tasks/soft/stream?window=0.5&hop=0.25&top_k=2") as socket:
        for piece in chunked(pcm, odd_sizes(5)):
            socket.send_bytes(piece)
        socket.send_text("end")
        got, code = received(socket)
    assert code == 1000
    expected = file_timeline(predictor_for(run=folder), path, Timeline(0.5, 0.25), 2)
    assert_same_windows(got, expected)


def test_a_window_comes_back_before_the_client_sends_more(served, long_recording):
    client, _ = served
    _, pcm = long_recording
    with client.websocket_connect("/v1/tasks/soft/stream") as socket:  # 0.96 s windows every 0.48 s
        socket.send_bytes(pcm[:2 * (400 + 95 * 160)])
        first = json.loads(socket.receive_text())
        assert (first["start"], first["end"]) == (0.0, 0.96) and len(first["predictions"]) == 4


@pytest.mark.parametrize("route, code, words", [
    ("/v1/tasks/sofy/stream", 4404, "unknown task 'sofy'; did you mean 'soft'?"),
    ("/v1/tasks/soft/stream?top_k=0", 4400, "top_k 0: give 1 or more"),
    ("/v1/tasks/soft/stream?window=3", 4400, "window 3: give a window of more than 0 and at most the model's input"),
    ("/v1/tasks/soft/stream?threshold=0.3", 4400, "thresholds apply to multi-label tasks"),
    ("/v1/tasks/soft/stream?timeline=true", 4400, "unknown query parameter 'timeline'"),
    ("/v1/tasks/soft/stream?hop=x", 4400, "hop='x' is not a valid value"),
])
def test_stream_refusals_are_an_error_frame_then_a_close(served, route, code, words):
    client, _ = served
    with client.websocket_connect(route) as socket:
        frames, closed = received(socket)
    assert closed == code and len(frames) == 1 and words in frames[0]["error"], frames


def test_a_text_frame_other_than_end_is_refused(served):
    client, _ = served
    with client.websocket_connect("/v1/tasks/soft/stream") as socket:
        socket.send_text("hello")
        frames, closed = received(socket)
    assert closed == 4400 and "send binary frames of 16 kHz mono s16le PCM" in frames[0]["error"]
