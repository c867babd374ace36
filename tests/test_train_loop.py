"""The training loop on tiny generated features with a tiny random AST (quick, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY, Kill, KillAt, _comparable, toy_config, toy_table

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.evaluate import evaluate_run
from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.data.splits import plan_splits
from helpers import load_run
from softmoa_cli.engine.petl.adapter_files import trainable_tensors
from softmoa_cli.engine.runs.files import ADAPTER_WEIGHTS
from softmoa_cli.engine.train.optim import decays, lr_factor, make_optimizer, make_scheduler

@pytest.mark.parametrize("method", ["linear", "full", "adapter", "dense", "soft", "lora"])
def test_each_method_trains_and_saves_only_trained_tensors(tmp_path, method):
    run, metrics = finetune(toy_config(method, epochs=1), tmp_path / "run", table=toy_table())
    result = metrics.to_dict()["folds"]["all"]["test"]
    model, labels, features = load_run(run)
    trained = trainable_tensors(model)
    assert result["trainable_params"] == sum(t.numel() for t in trained.values())
    from safetensors.torch import load_file

    saved = load_file(str(run / ADAPTER_WEIGHTS))
    assert set(saved) == set(trained)
    # safetensors: 4 bytes per fp32 value plus a small header.
    assert 4 * result["trainable_params"] < result["adapter_bytes"] < 4 * result["trainable_params"] + 8192
    assert labels == [f"class{i}" for i in range(4)] and features.max_length == 48
    assert len(metrics.to_dict()["folds"]["all"]["epochs"]) == 1
    assert json.loads((run / "run.json").read_text())["finished"] is True
    assert (run / "log.csv").read_text().count("\n") == 2 and not (run / "state.pt").exists()


def test_short_run_learns_and_keeps_the_best_epoch(tmp_path):
    run, metrics = finetune(toy_config("adapter", epochs=4), tmp_path / "run", table=toy_table())
    fold = metrics.to_dict()["folds"]["all"]
    result, epochs = fold["test"], fold["epochs"]
    assert result["accuracy"] >= 0.9  # chance is 0.25
    best = max(range(len(epochs)), key=lambda i: (epochs[i]["valid_accuracy"], -i))
    assert result["best_epoch"] == best + 1
    assert result["valid_accuracy"] == epochs[best]["valid_accuracy"]
    # The rate the last step used: the cosine's last step before 0 (4 epochs of 7 steps).
    assert epochs[-1]["lr"] == pytest.approx(5e-3 * lr_factor(27, 28)) and epochs[-1]["lr"] > 0


def test_evaluate_agrees_with_the_runs_test_accuracy(tmp_path):
    table = toy_table()
    run, metrics = finetune(toy_config("soft", epochs=2), tmp_path / "run", table=table)
    report = evaluate_run(run, "test", table=table)
    assert report["summary"]["accuracy_mean"] == metrics.to_dict()["summary"]["accuracy_mean"]
    assert report["folds"][0]["clips"] == 40 and sum(map(sum, report["confusion"])) == 40
    valid = evaluate_run(run, "valid", table=table)
    assert valid["summary"]["accuracy_mean"] == metrics.to_dict()["folds"]["all"]["test"]["valid_accuracy"]


def test_adapter_checkpoint_reloads_with_identical_logits(tmp_path):
    table = toy_table()
    captured = {}

    from softmoa_cli.engine.train import loop

    real = loop.save_adapter

    def spy(directory, tensors, *args):
        captured.update({k: v.clone() for k, v in tensors.items()})
        return real(directory, tensors, *args)

    loop.save_adapter = spy
    try:
        run, _ = finetune(toy_config("soft", epochs=1), tmp_path / "run", table=table)
    finally:
        loop.save_adapter = real
    model, _, _ = load_run(run)
    x, _ = table.batch(np.arange(8))
    # The same backbone and the captured best tensors, assembled independently:
    from softmoa_cli.engine.petl.build import build_model
    from softmoa_cli.engine.models.pretrained import load_pretrained
    from softmoa_cli.engine.petl.adapter_files import load_tensors_

    reference = build_model(load_pretrained(run / "backbone"), toy_config("soft").method, 4, 48)
    load_tensors_(reference, captured, "captured")
    with torch.no_grad():
        assert torch.equal(model(x), reference.eval()(x))
        assert not torch.equal(model(x), build_model(load_pretrained(run / "backbone"),
                                                     toy_config("soft").method, 4, 48).eval()(x))


@pytest.mark.parametrize("kill_at", [6, 8, 13])  # mid-epoch after a checkpoint, at one, in the second epoch
def test_resume_after_a_kill_reproduces_the_uninterrupted_metrics(tmp_path, kill_at):
    table = toy_table()
    config = toy_config("soft", data={"spec_augment": {"freq_mask": 4, "time_mask": 8}}, epochs=2)
    _, straight = finetune(config, tmp_path / "straight", table=table)
    with pytest.raises(Kill):
        finetune(config, tmp_path / "killed", callback=KillAt(kill_at), table=table)
    assert (tmp_path / "killed" / "state.pt").exists() and not (tmp_path / "killed" / ADAPTER_WEIGHTS).exists()
    _, resumed = finetune(config, tmp_path / "killed", table=table)
    assert _comparable(resumed) == _comparable(straight)


def test_kfold_rotates_folds_and_reports_mean_and_std(tmp_path):
    table = toy_table(n=100, folds=5)
    config = build_config({"data": {"dataset": "toy"}, "model": {"checkpoint": "random", "random": TINY},
                           "method": {"name": "linear"}, "training": {"epochs": 1, "batch_size": 20}})
    plans = plan_splits(table, config.data)
    assert [p.fold for p in plans] == [1, 2, 3, 4, 5]
    for plan in plans:
        assert set(table.fold[plan.test]) == {plan.fold}
        assert set(table.fold[plan.valid]) == {plan.fold % 5 + 1}
        assert len(plan.train) == 60 and not set(plan.train) & (set(plan.valid) | set(plan.test))
    run, metrics = finetune(config, tmp_path / "run", table=table)
    accuracies = [metrics.to_dict()["folds"][str(k)]["test"]["accuracy"] for k in range(1, 6)]
    assert metrics.to_dict()["summary"]["accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert metrics.to_dict()["summary"]["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert all((run / f"fold-{k}" / ADAPTER_WEIGHTS).is_file() for k in range(1, 6))
    report = evaluate_run(run, table=table)
    assert [f["accuracy"] for f in report["folds"]] == accuracies


def test_split_set_without_validation_holds_out_training_clips_never_test_clips():
    table = toy_table()
    plan, = plan_splits(table, toy_config().data)
    assert len(plan.test) == 40 and set(plan.test) == set(range(120, 160))
    assert len(plan.valid) == 12 and np.bincount(table.labels[plan.valid]).tolist() == [3, 3, 3, 3]
    assert not set(plan.valid) & set(plan.train) and len(plan.train) + len(plan.valid) == 120


def test_weight_decay_by_rank_and_cosine_schedule():
    from softmoa_cli.engine.petl.build import build_model
    from softmoa_cli.engine.models.ast import ASTConfig

    model = build_model(ASTConfig(**TINY, max_length=48, num_mel_bins=32), "soft", 4, experts=3)
    config = toy_config()
    optimizer = make_optimizer(model, config.training, 0.01)
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decayed["params"]) and plain["params"]
    assert optimizer.defaults["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-6
    assert decays("pos_embed", torch.zeros(1, 50, 8)) and not decays("cls_token", torch.zeros(1, 1, 8))
    assert not decays("experts.up_bias", torch.zeros(3, 8))  # stacked biases: see test_optim_init
    scheduler = make_scheduler(optimizer, 10)
    rates = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert rates[4] == pytest.approx(0.005) and rates[-1] == pytest.approx(0.0, abs=1e-12)
