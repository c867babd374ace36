"""The HTTP API of ``softmoa serve`` (FastAPI's test client, no socket): predict's JSON for an
uploaded FSDD clip, the Hugging Face shape, the task list, every refusal a one-line 4xx JSON,
the admin routes, and a real server on loopback answering curl-like requests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_ok

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from softmoa_cli.engine.serve.batcher import Batcher  # noqa: E402
from softmoa_cli.engine.serve.http import build_app  # noqa: E402
from softmoa_cli.engine.serve.service import Service  # noqa: E402
from softmoa_cli.engine.serve.tasks import TaskSet  # noqa: E402


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny runs on one random backbone that take 1 s windows of real audio: a Soft-MoA
    run and a LoRA run on five FSDD-like classes (the toy table's features are noise, so
    these runs are untrained in effect; predict is the reference either way)."""
    from helpers import toy_config, toy_table

    from softmoa_cli.engine.data.features import FeatureConfig
    from softmoa_cli.engine.data.table import FeatureTable
    from softmoa_cli.engine.train import finetune

    toy = toy_table()
    table = FeatureTable("toy", toy.features.repeat(2, axis=1).repeat(4, axis=2), toy.labels, toy.label_names,
                         toy.split, toy.fold, FeatureConfig(num_mel_bins=128, max_length=96))
    base = tmp_path_factory.mktemp("serve-runs")
    return {method: finetune(toy_config(method, epochs=1, data={"max_length": 96}), base / method, table=table)[0]
            for method in ("soft", "lora")}


@pytest.fixture(scope="module")
def client(two_runs):
    tasks = TaskSet()
    for name, folder in two_runs.items():
        tasks.add(name, folder)
    service = Service(tasks, Batcher(max_batch=8, max_wait_ms=5), max_bytes=200_000)
    with TestClient(build_app(service, admin=True)) as test_client:
        yield test_client
    service.batcher.close()


def predicted(clip: Path, run: Path, *flags) -> dict:
    return json.loads(run_ok("predict", clip, "--run", run, "--json", *flags).stdout)[0]


def test_predict_answers_as_softmoa_predict_does(client, two_runs, fsdd_clips):
    clip = fsdd_clips[0]
    for name, run in two_runs.items():
        answer = client.post(f"/v1/tasks/{name}/predict?filename={clip.name}", content=clip.read_bytes())
        assert answer.status_code == 200, answer.text
        expected = predicted(clip, run)
        assert answer.json() | {"file": expected["file"]} == expected
    timeline = client.post("/v1/tasks/soft/predict?timeline=true&window=0.5&hop=0.25&top_k=2",
                           files={"audio": (clip.name, clip.read_bytes(), "audio/wav")})
    expected = predicted(clip, two_runs["soft"], "--timeline", "--window", "0.5", "--hop", "0.25", "--top-k", "2")
    assert timeline.status_code == 200 and timeline.json()["file"] == clip.name
    assert timeline.json()["timeline"] == expected["timeline"] and timeline.json()["segments"] == expected["segments"]


def test_the_hugging_face_shape_and_the_task_list(client, two_runs, fsdd_clips):
    clip = fsdd_clips[1]
    answer = client.post("/v1/tasks/lora", content=clip.read_bytes())
    expected = predicted(clip, two_runs["lora"])["predictions"]
    assert answer.json() == [{"label": p["label"], "score": p["score"]} for p in expected]
    assert client.get("/health").json() == {"status": "ok", "tasks": 2}
    listed = client.get("/v1/tasks").json()
    assert [t["name"] for t in listed] == ["soft", "lora"]
    assert listed[0]["labels"] == [f"class{i}" for i in range(4)] and listed[1]["method"] == "lora"
    assert listed[0]["window_seconds"] == 0.96 and listed[0]["task"] == "singlelabel"


@pytest.mark.parametrize("path, body, status, words", [
    ("/v1/tasks/sofy/predict", b"RIFF", 404, "unknown task 'sofy'; did you mean 'soft'?"),
    ("/v1/tasks/soft/predict", b"", 400, "empty input"),
    ("/v1/tasks/soft/predict", b"not audio at all", 400, "upload:"),
    ("/v1/tasks/soft/predict", b"x" * 300_000, 413, "over the limit"),
    ("/v1/tasks/soft/predict?top_k=0", b"RIFF", 400, "top_k 0: give 1 or more"),
    ("/v1/tasks/soft/predict?top_k=two", b"RIFF", 400, "top_k='two' is not a valid value"),
    ("/v1/tasks/soft/predict?threshold=0.3", b"RIFF", 400, "one label per file"),
    ("/v1/tasks/soft/predict?window=1", b"RIFF", 400, "add timeline=true"),
    ("/v1/tasks/soft/predict?colour=red", b"RIFF", 400, "unknown query parameter 'colour'"),
    ("/v1/tasks/soft/predict?timeline=true&hop=nan", b"RIFF", 400, "hop nan: give a hop of more than 0"),
    ("/v1/tasks/soft/predict?timeline=true&hop=inf", b"RIFF", 400, "hop inf: give a hop of more than 0"),
    ("/v1/nothing", b"", 404, "not found: POST /v1/nothing"),
])
def test_every_refusal_is_one_line_of_json(client, path, body, status, words):
    answer = client.post(path, content=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert words in error and "\n" not in error, error


def test_audio_too_loud_to_featurise_and_a_malformed_length_are_refused(client):
    """Float samples so large that their spectrum overflows: a 400, not scores of null; a
    Content-Length that is no number: the body read decides (a 400 for this one), not a 500."""
    import io

    import numpy as np
    import soundfile as sf

    loud = io.BytesIO()
    sf.write(loud, np.full(8000, 1e38, dtype=np.float32), 8000, subtype="FLOAT", format="WAV")
    answer = client.post("/v1/tasks/soft/predict", content=loud.getvalue())
    assert answer.status_code == 400 and "too large to score" in answer.json()["error"]
    answer = client.post("/v1/tasks/soft/predict", content=b"not audio", headers={"content-length": "nine"})
    assert answer.status_code == 400 and "not a readable audio file" in answer.json()["error"]


def test_requests_waiting_for_their_batch_hold_no_thread(two_runs, fsdd_clips):
    """More requests at once than the default thread pool has threads (at most 32) all land in
    one batch: a request waits for its batch in the event loop, not in a thread (it used to hold
    a thread, so on 2 cores at most 6 requests could share a batch)."""
    import asyncio

    import httpx

    tasks = TaskSet()
    tasks.add("soft", two_runs["soft"])
    shared = tasks.get("soft")[1].shared
    sizes, forward = [], shared.forward
    shared.forward = lambda x, keys: (sizes.append(len(keys)), forward(x, keys))[1]
    service = Service(tasks, Batcher(max_batch=40, max_wait_ms=10_000))
    body = fsdd_clips[0].read_bytes()

    async def forty() -> list[int]:
        transport = httpx.ASGITransport(app=build_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as http:
            answers = await asyncio.gather(*(http.post("/v1/tasks/soft/predict", content=body) for _ in range(40)))
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(forty()) == [200] * 40
    finally:
        service.batcher.close()
    assert sizes == [40]


def test_a_long_timeline_window_is_refused_with_the_query_names(client, fsdd_clips):
    answer = client.post("/v1/tasks/soft/predict?timeline=true&window=3", content=fsdd_clips[0].read_bytes())
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("window 3: give a window of more than 0 and at most the model's input")


def test_tasks_are_added_and_removed_from_the_host_only(client, two_runs, fsdd_clips):
    added = client.post("/v1/tasks", json={"run": str(two_runs["soft"]), "name": "again"})
    assert added.status_code == 201 and added.json()["name"] == "again"
    clip = fsdd_clips[2]
    assert (client.post("/v1/tasks/again/predict", content=clip.read_bytes()).json()["predictions"]
            == client.post("/v1/tasks/soft/predict", content=clip.read_bytes()).json()["predictions"])
    taken = client.post("/v1/tasks", json={"run": str(two_runs["lora"]), "name": "again"})
    assert taken.status_code == 400 and "served already" in taken.json()["error"]
    assert client.delete("/v1/tasks/again").status_code == 204
    assert client.post("/v1/tasks/again/predict", content=clip.read_bytes()).status_code == 404
    assert client.post("/v1/tasks", content=b"{").status_code == 400
    remote = TestClient(client.app, client=("10.0.0.7", 5000))
    assert remote.delete("/v1/tasks/soft").status_code == 403
    assert client.get("/v1/tasks").json()[0]["name"] == "soft"


def test_kserve_v2_infer_answers_the_top_labels(client, two_runs, fsdd_clips):
    import base64

    clip = fsdd_clips[3]
    body = {"id": "r1", "inputs": [{"name": "audio", "datatype": "BYTES", "shape": [1],
                                    "data": [base64.b64encode(clip.read_bytes()).decode()],
                                    "parameters": {"top_k": 3}}]}
    answer = client.post("/v2/models/soft/infer", json=body)
    expected = predicted(clip, two_runs["soft"], "--top-k", "3")["predictions"]
    assert answer.status_code == 200 and answer.json()["id"] == "r1"
    labels, scores = answer.json()["outputs"]
    assert labels["data"] == [p["label"] for p in expected] and scores["data"] == [p["score"] for p in expected]
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/lora").json()["parameters"]["labels"] == [f"class{i}" for i in range(4)]
    assert client.get("/v2/models/nope").status_code == 404
    refused = client.post("/v2/models/soft/infer", json={"inputs": [{"datatype": "FP32", "data": [1.0]}]})
    assert refused.status_code == 400 and "base64" in refused.json()["error"]


def test_without_admin_there_are_no_admin_routes(two_runs):
    tasks = TaskSet()
    tasks.add("soft", two_runs["soft"])
    service = Service(tasks, Batcher())
    try:
        plain = TestClient(build_app(service))
        assert plain.delete("/v1/tasks/soft").status_code == 405
        assert plain.post("/v1/tasks", json={"run": "x"}).status_code == 405
    finally:
        service.batcher.close()


def test_softmoa_serve_answers_on_loopback_and_stops_on_sigterm(two_runs, fsdd_clips, tmp_path):
    """The command a user runs: a server process on 127.0.0.1, a request with urllib as curl
    sends it (the body); SIGTERM: it shuts down and ends by the signal (uvicorn re-raises it
    once the requests in flight are answered), without a traceback."""
    import signal
    import urllib.request

    server = subprocess.Popen([sys.executable, "-c", "from softmoa_cli.cli.app import main; main()", "serve",
                               f"digits={two_runs['soft']}", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            text = server.stdout.readline()
            if text.startswith("serving on "):
                url = text.split()[2]
            elif not text and server.poll() is not None:
                break
        assert url is not None and url.startswith("http://127.0.0.1:"), server.stderr.read()
        clip = fsdd_clips[0]
        request = urllib.request.Request(f"{url}/v1/tasks/digits/predict", data=clip.read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as answer:
            got = json.loads(answer.read())
        assert got["predictions"] == predicted(clip, two_runs["soft"])["predictions"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == -signal.SIGTERM
        assert "Traceback" not in server.stderr.read()
