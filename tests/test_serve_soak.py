"""A soak test of ``softmoa serve``: a real server process on loopback, a few hundred requests
from concurrent clients over three tasks on the embedded backbone, bad uploads mixed in; then a
SIGTERM while long timeline requests are in flight.

Every good request is answered as ``softmoa predict --json`` answers for that file (the
predictor behind it, run in this process once per task and file), every bad one is a 4xx with
one line of JSON, no request goes unanswered, none is a 500; the requests in flight when SIGTERM
arrives are answered, correctly, before the server ends by the signal. Bounded: every request
and wait has a timeout, and the server is killed in ``finally`` if it is still running."""

from __future__ import annotations

import http.client
import io
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import DIGITS, random_run

pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"soft": {"name": "soft", "experts": 4}, "lora": {"name": "lora", "rank": 4},
           "seq": {"name": "adapter", "placement": "sequential", "location": "ffn"}}
CLIPS = ["0_jackson_0.wav", "1_nicolas_3.wav", "2_theo_7.wav", "3_yweweler_12.wav", "5_george_20.wav",
         "6_lucas_31.wav", "8_jackson_44.wav", "9_theo_2.wav"]
MAX_BYTES = 400_000  # the server's upload limit (--max-mb takes MiB; 400000 / 2**20 is exact in binary)
SERVE_FLAGS = ["--max-batch", "16", "--max-wait-ms", "5", "--max-mb", repr(MAX_BYTES / 2**20)]
TIMELINE = "timeline=true&window=1&hop=0.1&top_k=2"  # on the long file (about 18 s): about 180 windows


@pytest.fixture(scope="module")
def soak(tmp_path_factory, fsdd_recordings):
    """The runs, the clips (copied) and a long file made of clips, and the expected answers:
    ``expected[(task, clip name)]`` (predict --json of the clip, every label) and
    ``timelines[task]`` (predict --json --timeline of the long file)."""
    from softmoa_cli.engine.predict import Timeline, predictor_for

    base = tmp_path_factory.mktemp("soak")
    runs = {name: random_run(base / "runs" / name, method, seed) for seed, (name, method) in enumerate(METHODS.items())}
    clips = {}
    for name in CLIPS:
        shutil.copy(fsdd_recordings / name, base / name)
        clips[name] = (base / name).read_bytes()
    waves = [sf.read(io.BytesIO(clips[name]), dtype="float32")[0] for name in CLIPS]
    long_wave = np.concatenate(waves * 5)  # about 18 s at 8 kHz, under the upload limit
    sf.write(base / "long.wav", long_wave, 8000, subtype="PCM_16")
    expected, timelines = {}, {}
    for task, folder in runs.items():
        predictor = predictor_for(run=folder)
        for result in predictor.predict_files([base / name for name in CLIPS], top_k=len(DIGITS)):
            expected[(task, Path(result.file).name)] = result.to_dict()
        timeline = predictor_for(run=folder, timeline=True)
        timelines[task] = next(timeline.predict_files([base / "long.wav"], 2, Timeline(1.0, 0.1))).to_dict()
    return {"runs": runs, "clips": clips, "long": (base / "long.wav").read_bytes(), "expected": expected,
            "timelines": timelines}


def start_server(runs: dict, log: Path) -> tuple[subprocess.Popen, str]:
    """``softmoa serve`` on 127.0.0.1, any free port; (process, "host:port") once it listens."""
    command = [sys.executable, "-c", "from softmoa_cli.cli.app import main; main()", "serve",
               *(f"{name}={folder}" for name, folder in runs.items()), "--host", "127.0.0.1", "--port", "0",
               *SERVE_FLAGS]
    env = os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(log, "w") as errors:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stdout], daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and server.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line.startswith("serving on http://"):
            return server, line.split()[2].removeprefix("http://")
    server.kill()
    raise AssertionError(f"the server did not start: {log.read_text()[-2000:]}")


def post(address: str, path: str, body: bytes, content_type: str = "application/octet-stream",
         timeout: float = 120) -> tuple[int, bytes]:
    """One POST on a new connection: (status, body)."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "softmoa-soak-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{name}\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def same_prediction(got: list[dict], want: list[dict]) -> bool:
    """The same labels in the same order with the same scores (6 decimals, as predict rounds;
    batches of other sizes may move the last one)."""
    return ([p["label"] for p in got] == [p["label"] for p in want]
            and all(abs(a["score"] - b["score"]) <= 2e-6 for a, b in zip(got, want)))


def plan(soak: dict, count: int, seed: int = 0) -> list[dict]:
    """``count`` requests, about one in five bad: each with its path, body, content type and
    what it must get (``want``: a check of the JSON, or the 4xx status and a word of the error)."""
    rng = random.Random(seed)
    wav = soak["clips"]
    oversized = b"RIFF" + bytes(MAX_BYTES + 1000)  # over the limit, read whole before it is refused
    bad = [
        (lambda t: (f"/v1/tasks/{t}/predict", b"this is not audio"), 400, "not a readable audio file"),
        (lambda t: (f"/v1/tasks/{t}/predict", b""), 400, "empty input"),
        (lambda t: (f"/v1/tasks/{t}/predict", oversized), 413, "over the limit"),
        (lambda t: (f"/v1/tasks/{t}/predict", wav[CLIPS[0]][:len(wav[CLIPS[0]]) // 2]), 400, "truncated"),
        (lambda t: ("/v1/tasks/nosuch/predict", wav[CLIPS[1]]), 404, "unknown task 'nosuch'"),
        (lambda t: (f"/v1/tasks/{t}/predict?top_k=0", wav[CLIPS[2]]), 400, "top_k 0"),
        (lambda t: (f"/v1/tasks/{t}/predict?colour=red", wav[CLIPS[3]]), 400, "unknown query parameter"),
        (lambda t: (f"/v1/tasks/{t}/predict?timeline=true&hop=nan", wav[CLIPS[4]]), 400, "hop nan"),
        (lambda t: (f"/v1/tasks/{t}/predict?threshold=0.5", wav[CLIPS[5]]), 400, "one label per file"),
    ]
    requests = []
    for index in range(count):
        task = rng.choice(list(METHODS))
        if index % 5 == 4:
            make, status, words = bad[(index // 5) % len(bad)]
            path, body = make(task)
            requests.append({"path": path, "body": body, "type": "application/octet-stream", "status": status,
                             "words": words})
            continue
        clip = rng.choice(CLIPS)
        top_k = rng.choice([1, 3, 5])
        want = soak["expected"][(task, clip)]["predictions"]
        kind = rng.random()
        if kind < 0.15:  # the Hugging Face shape
            requests.append({"path": f"/v1/tasks/{task}", "body": wav[clip], "type": "application/octet-stream",
                             "status": 200, "want": lambda got, want=want[:5]: same_prediction(got, want)})
            continue
        path = f"/v1/tasks/{task}/predict?top_k={top_k}"
        if kind < 0.3:
            body, content_type = multipart(clip, wav[clip])
        else:
            body, content_type, path = wav[clip], "application/octet-stream", path + f"&filename={clip}"
        requests.append({"path": path, "body": body, "type": content_type, "status": 200,
                         "want": lambda got, clip=clip, want=want[:top_k]: (
                             got["file"] == clip and same_prediction(got["predictions"], want))})
    return requests


def check(request: dict, status: int, text: bytes) -> str | None:
    """What is wrong with the answer (None: right)."""
    if status != request["status"]:
        return f"{request['path']}: {status} (wanted {request['status']}): {text[:300]!r}"
    if status == 200:
        return None if request["want"](json.loads(text)) else f"{request['path']}: wrong answer {text[:300]!r}"
    error = json.loads(text)
    if list(error) != ["error"] or b"\n" in text.strip() or request["words"] not in error["error"]:
        return f"{request['path']}: refusal {text[:300]!r} is not one line of JSON saying {request['words']!r}"
    return None


def test_a_few_hundred_concurrent_requests_then_sigterm_with_requests_in_flight(soak, tmp_path):
    server, address = start_server(soak["runs"], tmp_path / "server.log")
    try:
        # -- the soak: 300 requests from 16 clients, about one in five bad
        requests = plan(soak, 300)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda r: post(address, r["path"], r["body"], r["type"]), requests))
        assert len(answers) == len(requests)  # none lost (a transport error would have raised)
        assert not [status for status, _ in answers if status >= 500]
        problems = [problem for request, (status, text) in zip(requests, answers)
                    if (problem := check(request, status, text))]
        assert not problems, f"{len(problems)} wrong: " + "; ".join(problems[:5])
        assert sum(status == 200 for status, _ in answers) == sum(r["status"] == 200 for r in requests) >= 200

        # -- SIGTERM while long timeline requests are in flight: each is answered, correctly
        tasks = list(METHODS)
        results: dict[str, tuple[int, bytes, float]] = {}
        sent = threading.Barrier(len(tasks) + 1, timeout=60)

        def timeline(task: str) -> None:
            host, port = address.rsplit(":", 1)
            connection = http.client.HTTPConnection(host, int(port), timeout=120)
            try:
                connection.request("POST", f"/v1/tasks/{task}/predict?{TIMELINE}&filename=long.wav",
                                   body=soak["long"], headers={"Content-Type": "audio/wav"})
                sent.wait()
                answer = connection.getresponse()
                results[task] = (answer.status, answer.read(), time.monotonic())
            finally:
                connection.close()

        threads = [threading.Thread(target=timeline, args=(task,)) for task in tasks]
        for thread in threads:
            thread.start()
        sent.wait()  # every request sent whole
        time.sleep(0.5)  # ... and read by the server
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(results) == sorted(tasks)
        for task, (status, text, _) in results.items():
            assert status == 200, text[:300]
            got, want = json.loads(text), soak["timelines"][task]
            assert got["file"] == "long.wav" and same_prediction(got["predictions"], want["predictions"])
            assert len(got["timeline"]) == len(want["timeline"]) > 100
            assert all(same_prediction(a["predictions"], b["predictions"]) and (a["start"], a["end"]) ==
                       (b["start"], b["end"]) for a, b in zip(got["timeline"], want["timeline"]))
            assert [(g["start"], g["end"], g["label"]) for g in got["segments"]] == [
                (w["start"], w["end"], w["label"]) for w in want["segments"]]
            assert all(abs(g["score"] - w["score"]) <= 2e-6 for g, w in zip(got["segments"], want["segments"]))
        assert max(arrived for _, _, arrived in results.values()) > signalled  # they were in flight
        assert server.wait(timeout=60) == -signal.SIGTERM
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
