"""Two processes with DDP over gloo (CPU) train like one process with gradient accumulation
(gradients synchronised at the last micro-batch only) and with early stopping (every rank stops
at the same epoch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from helpers import toy_config, toy_table
from softmoa_cli.engine.train import finetune

training = json.loads(sys.argv[3])
run, metrics = finetune(toy_config("soft", device="cpu", threads=1, **training), sys.argv[1], table=toy_table())
if metrics:
    json.dump(metrics.to_dict(), open(sys.argv[2], "w"))
"""

SCENARIOS = {
    # 4 micro-batches of 8 (each rank 4 clips of each); the last step's 12 clips: 8 and 4.
    "accumulate": {"epochs": 2, "batch_size": 8, "accumulate": 4, "mixup": 0.4},
    # A rate too small to change a prediction: epoch 1 stays the best, the stop comes after epoch 3.
    "patience": {"epochs": 6, "patience": 2, "lr": 1e-12},
}


def _run(tmp_path: Path, name: str, processes: int, training: dict) -> dict:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    out = tmp_path / f"{name}.json"
    done = subprocess.run([*launcher, str(script), str(tmp_path / name), str(out), json.dumps(training)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())["folds"]["all"]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_gloo_processes_match_one_process(tmp_path, scenario):
    one = _run(tmp_path, "single", 1, SCENARIOS[scenario])
    two = _run(tmp_path, "ddp", 2, SCENARIOS[scenario])
    assert len(two["epochs"]) == len(one["epochs"])
    for a, b in zip(one["epochs"], two["epochs"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
        assert b["valid_accuracy"] == a["valid_accuracy"]
    for key in ("accuracy", "best_epoch", "stopped_early", "epochs_trained"):
        assert two["test"][key] == one["test"][key]
    if scenario == "patience":
        assert one["test"]["stopped_early"] and one["test"]["epochs_trained"] == 3
    a, b = (load_file(str(tmp_path / name / "adapter.safetensors")) for name in ("single", "ddp"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
