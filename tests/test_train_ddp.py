"""Two processes with DDP over gloo (CPU) train like one process: same first-step loss, same model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from helpers import toy_config, toy_table
from softmoa_cli.engine.train import Callback, finetune

class FirstLoss(Callback):
    first = None
    def step(self, info):
        if self.first is None:
            self.first = info.loss

callback = FirstLoss()
run, metrics = finetune(toy_config("soft", epochs=2, device="cpu", threads=1), sys.argv[1], callback, toy_table())
if metrics:
    json.dump({{"first_loss": callback.first, "metrics": metrics.to_dict()}}, open(sys.argv[2], "w"))
"""


def _run(tmp_path: Path, name: str, processes: int) -> dict:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    out = tmp_path / f"{name}.json"
    done = subprocess.run([*launcher, str(script), str(tmp_path / name), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow  # starts torchrun
def test_two_gloo_processes_match_one_process(tmp_path):
    single = _run(tmp_path, "single", 1)
    double = _run(tmp_path, "ddp", 2)
    assert double["first_loss"] == pytest.approx(single["first_loss"], abs=1e-6)
    one, two = single["metrics"]["folds"]["all"], double["metrics"]["folds"]["all"]
    for a, b in zip(one["epochs"], two["epochs"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)
        assert b["valid_accuracy"] == a["valid_accuracy"]
    assert two["test"]["accuracy"] == one["test"]["accuracy"]
    assert two["test"]["clips"] == one["test"]["clips"] == 40

    from safetensors.torch import load_file

    import torch

    a, b = load_file(str(tmp_path / "single" / "adapter.safetensors")), load_file(str(tmp_path / "ddp" / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
