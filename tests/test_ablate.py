"""Ablation studies: tiny grids of real runs on generated features (quick, CPU)."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
from helpers import TINY, Kill, KillAt, toy_table
from typer.testing import CliRunner

from softmoa_cli.engine.task import SINGLE
from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.config import ModelConfig
from softmoa_cli.engine.train.backbone import backbone_dim
from softmoa_cli.engine.ablate import run_study, study_config
from softmoa_cli.engine.ablate.configs import point_config
from softmoa_cli.engine.ablate.points import point_dir
from softmoa_cli.engine.ablate.studies import STUDIES
from softmoa_cli.engine.accounting import count_parameters
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.models.ast import AST, ASTConfig
from softmoa_cli.engine.models.pretrained import Pretrained, save_model
from softmoa_cli.engine.train import finetune

PRESET = {"data": {"dataset": "toy"}, "model": {"checkpoint": "random", "random": TINY | {"depth": 1}},
          "training": {"epochs": 1, "batch_size": 16, "resume_every": 4, "seed": 3, "threads": 1}}


def test_killed_study_resumes_and_writes_consistent_results(tmp_path):
    study = STUDIES["slots"]
    base = study_config(study, PRESET, {"method.experts": 2})
    table, calls = toy_table(n=80), []

    def train(config, run_dir, kill_at=3):
        calls.append(run_dir.name)
        callback = KillAt(2) if len(calls) == kill_at else None
        return finetune(config, run_dir, callback, table=table)[1]

    with pytest.raises(Kill):  # killed inside the third run (value 2, seed 0)
        run_study(study, base, tmp_path, (1, 2), seeds=2, train=train)
    assert calls == ["1-seed0", "1-seed1", "2-seed0"] and not (tmp_path / "results.csv").exists()
    calls.clear()
    rows = run_study(study, base, tmp_path, (1, 2), seeds=2, train=lambda c, d: train(c, d, kill_at=0))
    assert calls == ["2-seed0", "2-seed1"]  # finished points reused, the killed one continued

    with open(tmp_path / "results.csv") as handle:
        saved = list(csv.DictReader(handle))
    assert [r["value"] for r in saved] == ["1", "2"] and [r["seeds"] for r in saved] == ["2", "2"]
    for row, value in zip(saved, (1, 2)):
        metrics = [json.loads((point_dir(tmp_path, value, seed) / "metrics.json").read_text()) for seed in (0, 1)]
        scores = [m["summary"]["accuracy_mean"] for m in metrics]
        mean, std = statistics.mean(scores), statistics.stdev(scores)  # the sample std, computed apart
        assert float(row["accuracy_mean"]) == pytest.approx(mean) and float(row["accuracy_std"]) == pytest.approx(std)
        trained = {m["folds"]["all"]["test"]["trainable_params"] for m in metrics}
        assert trained == {int(row["trainable_params"])}
        assert int(row["flops"]) > 0 and float(row["epoch_seconds"]) > 0 and float(row["peak_memory_mib"]) > 0
    assert int(saved[1]["trainable_params"]) > int(saved[0]["trainable_params"])  # more slot parameters
    assert [r["value"] for r in rows] == [1, 2]
    markdown = (tmp_path / "results.md").read_text().splitlines()
    assert len([line for line in markdown if line.startswith("| ")]) == 3  # header and one row per value
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "seed: 4" in (point_dir(tmp_path, 2, 1) / "config.yaml").read_text()  # the preset's seed 3 + index 1


def test_every_study_gives_valid_point_configs():
    base_preset = PRESET | {"model": {"checkpoint": "random", "random": TINY | {"dim": 768, "heads": 12, "depth": 1}}}
    for study in STUDIES.values():
        base = study_config(study, base_preset)
        for value in study.values:
            config = point_config(base, study, value, 1, dim=768)
            assert config.training.seed == 4
            assert getattr(config.method, study.key) == value
    study = STUDIES["methods"]
    base = study_config(study, base_preset)
    backbone = ASTConfig(dim=768, depth=1, heads=12, mlp_dim=64, max_length=48, num_mel_bins=32)
    trained = {value: count_parameters(build_model(backbone, point_config(base, study, value, 0, 768).method, 10))[0]
               for value in study.values}
    budget = [trained[name] for name in ("adapter", "lora", "dense", "soft")]
    assert max(budget) / min(budget) < 1.25, trained
    assert trained["linear"] < min(budget) and trained["full"] > 10 * max(budget)


def test_backbone_dim_read_from_the_reference(tmp_path):
    assert backbone_dim(ModelConfig(checkpoint="random", random=PRESET["model"]["random"])) == 32
    config = ASTConfig(dim=48, depth=1, heads=2, mlp_dim=64, max_length=48, num_mel_bins=32)
    save_model(Pretrained(AST(config), [], SINGLE, "test", {}), tmp_path / "backbone")
    assert backbone_dim(ModelConfig(checkpoint=str(tmp_path / "backbone"))) == 48
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"hidden_size": 1024}))
    assert backbone_dim(ModelConfig(checkpoint=str(tmp_path / "hf"))) == 1024


def test_a_swept_key_cannot_also_be_set():
    with pytest.raises(SoftmoaError, match="sweeps method.slots"):
        study_config(STUDIES["slots"], PRESET, {"method.slots": 2})
    with pytest.raises(SoftmoaError, match="sweeps method.name"):
        study_config(STUDIES["methods"], PRESET, {"method.name": "adapter"})


@pytest.mark.parametrize("arguments, message", [
    (["slots", "--values", "1,x"], "'x' is not a value of study 'slots'"),
    (["location", "--values", "mhsa,both"], "'both' is not a value of study 'location'"),
    (["slots", "--values", "0", "--dataset", "toy"], "study 'slots', value 0: slots"),
    (["depth"], "unknown study 'depth'"),
    (["slots", "--set", "training.weight_decay"], "expected KEY=VALUE"),
    (["slots", "--dataset", "toy", "--set", "training.epocs=3"], "unknown key"),
])
def test_bad_input_is_one_line_and_exit_code_2(arguments, message, tmp_path):
    result = CliRunner().invoke(build_app(), ["ablate", *arguments, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_cli_runs_a_study_and_shows_the_table(tmp_path, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message, front_end=None: toy_table(n=80))
    arguments = ["ablate", "init", "--dataset", "toy", "--values", "zero_up", "--epochs", "1", "--batch-size", "16",
                 "--checkpoint", "random", "--threads", "1", "--set", "model.random={dim: 32, depth: 1, heads: 2, mlp_dim: 64}",
                 "--set", "training.weight_decay=0", "--out", str(tmp_path)]
    result = CliRunner().invoke(build_app(), arguments)
    assert result.exit_code == 0, result.output
    assert "ablate init" in result.output and "zero_up" in result.output
    config = (point_dir(tmp_path, "zero_up", 0) / "config.yaml").read_text()
    assert "weight_decay: 0" in config and "dim: 32" in config
    assert (tmp_path / "results.md").is_file() and (tmp_path / "plot.png").is_file()
