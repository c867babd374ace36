"""The offline default: `softmoa finetune` alone builds the embedded data, trains Soft-MoA and
a single adapter on the embedded backbone, and the run predicts on any WAV file."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.data import synth_sets as embedded


@pytest.fixture
def small_default(tmp_path, monkeypatch):
    """The default job at a reduced size: 60 clips per class instead of 100."""
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(embedded, "PER_CLASS", embedded.PER_CLASS | {"downstream": 60})
    return tmp_path


@pytest.mark.slow
def test_default_finetune_trains_both_methods_well_above_chance_on_the_embedded_backbone(small_default, fsdd_clips):
    tmp_path = small_default
    app = build_app()
    first = CliRunner().invoke(app, ["finetune", "--out", str(tmp_path / "runs")])
    assert first.exit_code == 0, first.output
    assert "pretraining" not in first.output and "embedded AST pretrained on synth-speech" in first.stderr
    assert "AudioSet AST" not in first.stderr  # the preset asks for the embedded backbone by name
    results = {}
    for method in ("adapter", "soft"):
        metrics = json.loads((tmp_path / "runs" / method / "metrics.json").read_text())
        results[method] = metrics["folds"]["all"]["test"]["accuracy"]
        assert metrics["method"] == method and metrics["dataset"] == "synth"
    assert "Soft-MoA against a single adapter" in first.stdout
    # chance: 1/12. Measured at this reduced size (8 epochs): soft 0.713, adapter 0.398.
    assert results["soft"] >= 0.5 and results["adapter"] >= 0.25, results
    assert not (tmp_path / "home" / "checkpoints").exists()  # nothing pretrained or installed

    clip = tmp_path / "clip.wav"
    shutil.copy(fsdd_clips[0], clip)
    predicted = CliRunner().invoke(app, ["predict", str(clip), "--run", str(tmp_path / "runs" / "soft"), "--json"])
    assert predicted.exit_code == 0, predicted.output
    labels = {p["label"] for p in json.loads(predicted.stdout)[0]["predictions"]}
    assert labels <= set(embedded.synth.TASKS["downstream"]) and len(labels) == 5


def test_print_config_of_the_default_shows_both_runs(small_default):
    result = CliRunner().invoke(build_app(), ["finetune", "--print-config"])
    assert result.exit_code == 0, result.output
    documents = result.stdout.split("data:\n")[1:]
    assert len(documents) == 2
    assert "name: adapter" in documents[0] and "reduction_rate: 16.0" in documents[0]
    assert "name: soft" in documents[1] and "experts: 7" in documents[1] and "checkpoint: embedded" in documents[1]


def test_default_job_passes_mixture_flags_only_to_soft(small_default):
    result = CliRunner().invoke(build_app(), ["finetune", "--experts", "4", "--location", "ffn", "--print-config"])
    assert result.exit_code == 0, result.output
    adapter, soft = result.stdout.split("data:\n")[1:]
    assert "location: ffn" in adapter and "experts" not in adapter
    assert "location: ffn" in soft and "experts: 4" in soft
