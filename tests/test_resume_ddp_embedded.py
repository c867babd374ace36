"""A k-fold run resumed after a kill skips its finished folds; two DDP processes train on the
embedded backbone, nothing pretrained on first use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Kill, KillAt, _comparable, toy_config, toy_table

from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.runs.files import ADAPTER_WEIGHTS


def test_kfold_resume_skips_finished_folds_and_matches_an_uninterrupted_run(tmp_path):
    table = toy_table(n=96, folds=3)  # 32 training clips per fold: 2 steps per epoch at batch 16
    config = toy_config("soft", epochs=2, resume_every=1)
    _, straight = finetune(config, tmp_path / "straight", table=table)

    killer = KillAt(4 + 3)  # fold 2, epoch 2, step 1: after fold 2's first epoch was saved
    with pytest.raises(Kill):
        finetune(config, tmp_path / "killed", callback=killer, table=table)
    assert killer.started == [1, 2]
    first, second = tmp_path / "killed" / "fold-1", tmp_path / "killed" / "fold-2"
    assert (first / ADAPTER_WEIGHTS).is_file() and not (first / "state.pt").exists()
    assert (second / "state.pt").is_file() and not (second / ADAPTER_WEIGHTS).exists()
    saved = (first / ADAPTER_WEIGHTS).read_bytes(), (first / ADAPTER_WEIGHTS).stat().st_mtime_ns

    resumer = KillAt(None)
    _, resumed = finetune(config, tmp_path / "killed", callback=resumer, table=table)
    assert resumer.started == [2, 3]  # fold 1 is not trained again
    assert resumer.steps == 4 - 2 + 4  # the rest of fold 2 from its epoch-1 checkpoint, then fold 3
    assert ((first / ADAPTER_WEIGHTS).read_bytes(), (first / ADAPTER_WEIGHTS).stat().st_mtime_ns) == saved
    assert _comparable(resumed) == _comparable(straight)


DDP_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.train import Callback, finetune
from softmoa_cli.engine.data.table import FeatureTable

class Messages(Callback):
    def message(self, text):
        print("message:", text, flush=True)

rng = np.random.default_rng(0)
labels = np.arange(32) % 4
split = np.array(["train"] * 24 + ["test"] * 8, dtype=object)
table = FeatureTable("toy", rng.normal(size=(32, 100, 128)).astype(np.float16), labels, ["a", "b", "c", "d"], split,
                     np.zeros(32, dtype=np.int64), FeatureConfig(num_mel_bins=128, max_length=100))
config = build_config({{"data": {{"dataset": "toy"}}, "model": {{"checkpoint": "embedded"}}, "method": {{"name": "soft"}},
                       "training": {{"epochs": 1, "batch_size": 8, "device": "cpu", "threads": 1}}}})
run, metrics = finetune(config, sys.argv[1], Messages(), table)
if metrics:
    json.dump(metrics.to_dict(), open(sys.argv[2], "w"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # starts torchrun
def test_two_gloo_processes_train_on_the_embedded_backbone(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    base = os.environ | {"SOFTMOA_HOME": str(tmp_path / "home"), "MASTER_ADDR": "127.0.0.1",
                         "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "metrics.json"
    processes = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(out)],
                                  env=base | {"RANK": str(rank), "LOCAL_RANK": str(rank)},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(2)]
    outputs = []
    try:
        for process in processes:  # a few seconds; a hang in a collective fails here
            outputs.append(process.communicate(timeout=120)[0])
    finally:
        for process in processes:
            process.kill()
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert "pretraining" not in outputs[0] + outputs[1]
    backbone = json.loads((tmp_path / "run" / "run.json").read_text())["backbone"]
    assert backbone == "embedded"
    assert not (tmp_path / "home" / "checkpoints").exists()
    assert json.loads(out.read_text())["folds"]["all"]["test"]["clips"] == 8
