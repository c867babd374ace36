"""Run folders written by softmoa 0.1.0 before runs, tasks and scores became types (a
single-label and a multi-label run in tests/data/runs-0.1.0, made by that code: metrics rows
keyed ``valid_mAP``/``checkpoint_bytes``, ``multi_label`` in softmoa.json, the task spelled
``singlelabel``/``multilabel``, ``checkpoint_every`` in config.yaml) still open, report and
predict exactly as they did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run_ok

from softmoa_cli.engine.runs.results import RunMetrics
from softmoa_cli.engine.runs.run import Run
from softmoa_cli.engine.task import MULTI, SINGLE

OLD_RUNS = Path(__file__).parent / "data" / "runs-0.1.0"


@pytest.fixture
def old_run(tmp_path, request):
    """A copy of an old run folder (``request.param``: single or multi)."""
    copy = tmp_path / request.param
    shutil.copytree(OLD_RUNS / request.param, copy)
    return copy


def tone(path: Path) -> Path:
    """The clip the old code predicted on: 1 s of a decaying 440 Hz tone and a faint 1.3 kHz one."""
    t = np.arange(16000) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
                    + 0.05 * np.sin(2 * np.pi * 1300 * t)).astype(np.float32), 16000)
    return path


@pytest.mark.parametrize("old_run, task, scores", [
    ("single", SINGLE, {"accuracy": 0.15555555555555556, "macro_f1": 0.07062951780323602}),
    ("multi", MULTI, {"mAP": 0.21847708924833395, "micro_f1": 0.2936596218020022, "d_prime": 0.06199008376151207}),
], indirect=["old_run"], ids=["single", "multi"])
def test_an_old_run_opens_with_its_task_results_and_config(old_run, task, scores):
    opened = Run.open(old_run)
    assert opened.task is task and opened.adapter().task is task
    assert opened.config.training.resume_every == 4  # written as checkpoint_every
    metrics = RunMetrics.read(old_run)
    result = metrics.folds["all"].result
    assert metrics.task is task and result.adapter_bytes == 5616 and result.best_epoch == 1
    assert {name: result.scores[name] for name in scores} == scores
    assert result.valid_score == (0.18888888888888888 if task is SINGLE else 0.264231158637319)
    assert metrics.summary()[f"{task.metric}_mean"] == scores[task.metric]
    assert [row.epoch for row in metrics.folds["all"].epochs] == [1]


@pytest.mark.parametrize("old_run", ["single", "multi"], indirect=True)
def test_an_old_run_predicts_what_it_predicted_then(old_run, tmp_path):
    then = json.loads((old_run / "predict-tone.json").read_text())[0]
    now = json.loads(run_ok("predict", tone(tmp_path / "tone.wav"), "--run", old_run, "--json",
                            "--top-k", "3").stdout)[0]
    assert [p["label"] for p in now["predictions"]] == [p["label"] for p in then["predictions"]]
    assert [p["score"] for p in now["predictions"]] == pytest.approx([p["score"] for p in then["predictions"]],
                                                                     abs=2e-6)
    if "positive" in then:
        assert [p["label"] for p in now["positive"]] == [p["label"] for p in then["positive"]]
