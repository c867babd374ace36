"""--log tensorboard / mlflow: the step and epoch scalars and the config as hyper-parameters
reach the tracker, read back with the tracker's own reader; log.csv is written as always."""

from __future__ import annotations

import csv

import pytest
from helpers import toy_config, toy_table

from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.train.tracking import flat_params

STEP = {"step/loss", "step/accuracy", "step/lr", "step/samples_per_s", "step/data_wait"}
EPOCH = {"epoch/train_loss", "epoch/train_accuracy", "epoch/valid_loss", "epoch/valid_accuracy", "epoch/lr",
         "epoch/seconds", "epoch/data_wait"}


def test_tensorboard_event_files_hold_every_step_and_epoch_scalar(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, metrics = finetune(toy_config("soft", epochs=2, log=["tensorboard"]), tmp_path / "run", table=toy_table())
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == STEP | EPOCH
    assert [e.step for e in events.Scalars("step/loss")] == list(range(1, 15))  # 7 optimiser steps an epoch
    epochs = metrics.to_dict()["folds"]["all"]["epochs"]
    valid = events.Scalars("epoch/valid_accuracy")
    assert [e.step for e in valid] == [7, 14]
    assert [e.value for e in valid] == pytest.approx([row["valid_accuracy"] for row in epochs])
    log = list(csv.DictReader(open(run / "log.csv")))
    assert [float(e.value) for e in events.Scalars("epoch/lr")] == pytest.approx([float(r["lr"]) for r in log])
    assert "config/text_summary" in events.Tags()["tensors"]


def test_mlflow_file_store_holds_the_params_and_metrics_of_each_step(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra (mlflow-skinny) is not installed")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()  # a file store: mlflow-skinny has no database back end
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    config = toy_config("soft", epochs=1, log=["mlflow"])
    run, metrics = finetune(config, tmp_path / "run", table=toy_table())
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("toy")
    found, = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    assert found.data.params["training.batch_size"] == "16" and found.data.params["method.name"] == "soft"
    assert set(found.data.metrics) == STEP | EPOCH
    history = client.get_metric_history(found.info.run_id, "step/lr")
    assert sorted(m.step for m in history) == list(range(1, 8))
    assert found.data.metrics["epoch/valid_accuracy"] == pytest.approx(
        metrics.to_dict()["folds"]["all"]["epochs"][0]["valid_accuracy"])


def test_flat_params_are_the_config_as_dotted_keys():
    params = flat_params(toy_config("soft", log=["tensorboard", "mlflow"]))
    assert params["training.epochs"] == 2 and params["model.random.dim"] == 32
    assert params["training.log"] == '["tensorboard", "mlflow"]' and params["training.patience"] == "null"


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def without_mlflow(name, *args, **kwargs):
        if name == "mlflow":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_mlflow)
    with pytest.raises(SoftmoaError, match=r"`log` mlflow: the mlflow package is not installed; "
                                           r"pip install 'softmoa\[mlflow\]'"):
        finetune(toy_config("linear", epochs=1, log=["mlflow"]), tmp_path / "run", table=toy_table())
