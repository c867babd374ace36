"""The GPU paths end to end: finetune (bf16 autocast, torch.compile, fp16 with activation
checkpointing), evaluate, predict, analyze and bench on ``cuda``, through the CLI as a user runs
them; serving mixed batches and a live stream on ``cuda``; the speech backbones trained and
scored there. Skipped without a GPU; ``benchmarks/gpu_check.sh`` runs this file on one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import run_ok

from softmoa_cli.engine.data import synth_sets as embedded

GPU = "cuda"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (none here); benchmarks/gpu_check.sh runs these on one")

TINY_PRESET = """\
data: {dataset: synth, max_length: 100}
model:
  checkpoint: random
  random: {dim: 64, depth: 2, heads: 4, mlp_dim: 128}
method: {name: soft, experts: 4, slots: 1, reduction_rate: 8}
training: {epochs: 1, batch_size: 16, seed: 0}
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(embedded, "PER_CLASS", embedded.PER_CLASS | {"downstream": 20})
    (tmp_path / "tiny.yaml").write_text(TINY_PRESET)
    return tmp_path


@pytest.mark.parametrize("flags", [["--precision", "bf16"], ["--precision", "fp32", "--compile"]],
                         ids=["bf16", "compile"])
def test_finetune_evaluate_predict_analyze_on_cuda(tiny, flags):
    out = tiny / "run"
    run_ok("finetune", "--preset", tiny / "tiny.yaml", "--device", "cuda", *flags, "--out", out)
    trained = json.loads((out / "metrics.json").read_text())["folds"]["all"]["test"]
    assert trained["clips"] > 0

    evaluated = json.loads(run_ok("evaluate", out, "--device", "cuda", "--json").stdout)
    # Scoring is fp32 on every device, so the run's own test and evaluate agree to the clip.
    assert evaluated["summary"]["accuracy_mean"] == trained["accuracy"]
    on_cpu = json.loads(run_ok("evaluate", out, "--device", "cpu", "--json").stdout)
    assert abs(on_cpu["summary"]["accuracy_mean"] - trained["accuracy"]) <= 1 / trained["clips"] + 1e-9

    clips = []
    for k, seconds in enumerate((0.01, 1.0, 3.3)):  # under one frame, one window, several windows
        clips.append(tiny / f"clip{k}.wav")
        sf.write(clips[-1], np.random.default_rng(k).normal(0, 0.1, int(16000 * seconds)).astype(np.float32), 16000)
    predicted = json.loads(run_ok("predict", *clips, "--run", out, "--device", "cuda", "--json", "-k", "100").stdout)
    assert len(predicted) == 3 and all(abs(sum(p["score"] for p in f["predictions"]) - 1) < 1e-4 for f in predicted)

    run_ok("analyze", out, "--device", "cuda", "--out", tiny / "analysis")
    layers = json.loads((tiny / "analysis" / "experts.json").read_text())["layers"]
    assert len(layers) == 2


def test_bench_on_cuda_measures_cuda_memory(tiny):
    report = tiny / "bench.json"
    run_ok("bench", "--device", "cuda", "--dim", "64", "--depth", "2", "--heads", "4", "--mlp-dim", "128",
           "--frames", "100", "--repeats", "2", "--methods", "linear,adapter,soft", "--json", report)
    result = json.loads(report.read_text())
    assert result["environment"]["gpu"] and "max_memory_allocated" in result["memory_measure"]
    assert all(row["peak_bytes"] > 0 and row["step_ms"] > 0 for row in result["methods"])


def test_finetune_with_activation_checkpointing_and_fp16_on_cuda(tiny):
    import yaml

    common = ["finetune", "--preset", tiny / "tiny.yaml", "--device", "cuda", "--precision", "fp16"]
    run_ok(*common, "--activation-checkpointing", "--out", tiny / "checkpointed")
    run_ok(*common, "--out", tiny / "plain")
    config = yaml.safe_load((tiny / "checkpointed" / "config.yaml").read_text())
    assert config["training"]["activation_checkpointing"] is True and config["training"]["precision"] == "fp16"
    checkpointed, plain = (json.loads((tiny / name / "metrics.json").read_text())["folds"]["all"]
                           for name in ("checkpointed", "plain"))
    # The recompute runs under the same autocast and RNG state: the same training, up to fp16 kernels.
    assert checkpointed["epochs"][0]["train_loss"] == pytest.approx(plain["epochs"][0]["train_loss"], rel=1e-2)
    assert checkpointed["test"]["clips"] == plain["test"]["clips"] > 0


def test_bench_with_activation_checkpointing_on_cuda(tiny):
    report = tiny / "bench.json"
    run_ok("bench", "--device", "cuda", "--dim", "64", "--depth", "4", "--heads", "4", "--mlp-dim", "128",
           "--frames", "400", "--repeats", "2", "--methods", "soft", "--reference", "soft",
           "--activation-checkpointing", "--json", report)
    result = json.loads(report.read_text())
    assert "max_memory_allocated" in result["memory_measure"]
    plain, checkpointed = result["methods"]
    assert checkpointed["label"] == "soft +checkpointing" and checkpointed["activation_checkpointing"]
    # 3 of 4 blocks keep only their input.
    assert checkpointed["step_bytes"] < 0.8 * plain["step_bytes"]
    assert checkpointed["step_bytes_ratio_to_plain"] == checkpointed["step_bytes"] / plain["step_bytes"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs two GPUs")
def test_ddp_over_nccl_matches_one_process(tiny):
    import subprocess
    import sys
    import shutil

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                shutil.which("softmoa")]
    common = ["finetune", "--preset", str(tiny / "tiny.yaml"), "--device", "cuda", "--precision", "fp32"]
    subprocess.run([*torchrun, *common, "--out", str(tiny / "ddp")], check=True, timeout=600)
    run_ok(*common, "--out", tiny / "single")
    ddp, single = (json.loads((tiny / name / "metrics.json").read_text())["folds"]["all"] for name in ("ddp", "single"))
    assert ddp["epochs"][0]["train_loss"] == pytest.approx(single["epochs"][0]["train_loss"], rel=1e-3)


def wav(path, seconds: float, seed: int):
    """A WAV of ``seconds`` of seeded noise at 16 kHz; its path."""
    sf.write(path, np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32), 16000)
    return path


def cpu_scores(clip, run_dir) -> dict[str, float]:
    predicted = json.loads(run_ok("predict", clip, "--run", run_dir, "--device", "cpu", "--json", "-k", "10").stdout)
    return {p["label"]: p["score"] for p in predicted[0]["predictions"]}


def test_serve_on_cuda_mixes_tasks_and_streams_as_predict_scores_on_the_cpu(tmp_path):
    from helpers import random_run

    from softmoa_cli.engine.serve.batcher import Batcher
    from softmoa_cli.engine.serve.service import Query, Service
    from softmoa_cli.engine.serve.tasks import TaskSet

    methods = {"soft": {"name": "soft", "experts": 4}, "lora": {"name": "lora"}, "linear": {"name": "linear"}}
    runs = {name: random_run(tmp_path / name, method, seed) for seed, (name, method) in enumerate(methods.items())}
    tasks = TaskSet(GPU)
    for name, folder in runs.items():
        tasks.add(name, folder)
    assert len(tasks.groups) == 1  # one backbone on the GPU for the three tasks
    service = Service(tasks, Batcher(max_batch=8, max_wait_ms=50))
    clip = wav(tmp_path / "clip.wav", 2.5, 0)  # 3 windows of 1 s
    try:
        pending = [(name, service.submit(name, clip.read_bytes(), clip.name, Query(top_k=10))) for name in runs]
        for name, request in pending:  # submitted together: one mixed batch on the GPU
            served = {p["label"]: p["score"] for p in request.answer()["predictions"]}
            expected = cpu_scores(clip, runs[name])
            # cuDNN may run the patch convolution in TF32: agreement to 1e-3, not 1e-5
            assert max(abs(served[label] - expected[label]) for label in expected) <= 1e-3
        live = service.stream("soft", Query(top_k=10))
        pcm = (np.clip(sf.read(clip, dtype="float32")[0], -1, 1) * 32767).astype("<i2").tobytes()
        records = [w.to_dict() for part in range(0, len(pcm), 3200) for w in live.feed(pcm[part:part + 3200])]
        records += [w.to_dict() for w in live.end()]
    finally:
        service.batcher.close()
    timeline = json.loads(run_ok("predict", clip, "--run", runs["soft"], "--device", "cpu", "--timeline",
                                 "--json", "-k", "10").stdout)[0]["timeline"]
    assert [(r["start"], r["end"]) for r in records] == [(w["start"], w["end"]) for w in timeline]
    for got, want in zip(records, timeline):
        want = {p["label"]: p["score"] for p in want["predictions"]}
        assert max(abs(p["score"] - want[p["label"]]) for p in got["predictions"]) <= 1e-3


@pytest.mark.parametrize("family", ["whisper", "wav2vec2"])
def test_a_speech_backbone_trains_and_scores_on_cuda(family, tiny):
    pytest.importorskip("transformers")
    from test_speech_runs import backbone_folder

    folder = backbone_folder(family, tiny / family)
    out = tiny / "run"
    run_ok("finetune", "--preset", tiny / "tiny.yaml", "--checkpoint", folder, "--device", GPU, "--precision", "bf16",
           "--out", out)
    assert json.loads((out / "metrics.json").read_text())["folds"]["all"]["test"]["clips"] > 0
    clip = wav(tiny / "clip.wav", 1.7, 1)
    predicted = json.loads(run_ok("predict", clip, "--run", out, "--device", GPU, "--json", "-k", "10").stdout)
    expected = cpu_scores(clip, out)
    assert max(abs(p["score"] - expected[p["label"]]) for p in predicted[0]["predictions"]) <= 1e-3
