"""Run folders: named for the time the run starts, kept whole, and refused clearly when a
folder is not a run."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from helpers import run, toy_config, toy_table

from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.evaluate import evaluate_run
from softmoa_cli.engine.train import backbone as backbone_module
from softmoa_cli.engine.train import finetune
from helpers import load_run
from softmoa_cli.engine.train import run as run_module


def test_run_folder_is_named_when_training_starts(tmp_path, monkeypatch):
    """A backbone that takes a while to get ready (the embedded one pretrains on first use)
    comes before the time stamp of the folder."""
    real = backbone_module.resolve_backbone

    def slow(*args, **kwargs):
        time.sleep(2.1)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "resolve_backbone", slow)
    monkeypatch.chdir(tmp_path)
    called = datetime.now().replace(microsecond=0)
    folder, _ = finetune(toy_config("linear", epochs=1), table=toy_table(n=80))
    stamp = datetime.strptime(folder.name.rsplit("-", 2)[-2] + folder.name.rsplit("-", 1)[-1], "%Y%m%d%H%M%S")
    assert folder.parent == Path("runs")
    assert (stamp - called).total_seconds() >= 2
    model, labels, _ = load_run(tmp_path / folder)  # the random backbone was kept in the folder
    assert labels == ["class0", "class1", "class2", "class3"] and (tmp_path / folder / "backbone").is_dir()


def test_a_folder_that_is_not_a_run_is_said_so(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(SoftmoaError, match="not a softmoa run folder .*made by `softmoa finetune`"):
        evaluate_run(tmp_path / "notes")
    with pytest.raises(SoftmoaError, match="no such run folder"):
        evaluate_run(tmp_path / "missing")
    result = run("evaluate", tmp_path / "notes")
    assert result.exit_code == 2 and "not a softmoa run folder" in result.stderr and "preset" not in result.stderr
