"""Schedules and stops count optimiser steps: warm-up then cosine (lr of every step), --max-steps
(the steps run, the schedule ending at 0 on the last), --patience (the stop epoch, the best epoch
tested, the stop surviving a kill and resume)."""

from __future__ import annotations

import math

import pytest
from helpers import Kill, _comparable, toy_config, toy_table

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.train import Callback, finetune
from softmoa_cli.engine.train.optim import lr_factor

PEAK = 5e-3  # the recipe's rate for PETL methods (toy_config sets none)


class Rates(Callback):
    """The learning rate of each step and the epochs ended."""

    def __init__(self):
        self.lrs, self.epochs, self.messages = [], [], []

    def step(self, info):
        self.lrs.append(info.lr)

    def epoch_end(self, fold, record):
        self.epochs.append(record.epoch)

    def message(self, text):
        self.messages.append(text)


def test_lr_factor_rises_linearly_from_0_then_follows_the_cosine():
    assert [lr_factor(s, 10, 4) for s in range(5)] == [0, 0.25, 0.5, 0.75, 1.0]
    assert lr_factor(7, 10, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert lr_factor(10, 10, 4) == 0 and lr_factor(12, 10, 4) == 0
    assert [lr_factor(s, 8) for s in range(9)] == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 8))
                                                                 for s in range(9)])


@pytest.mark.parametrize(("warmup", "steps"), [(0.25, 4), (3, 3), (0, 0)])
def test_each_steps_lr_follows_warmup_then_cosine(tmp_path, warmup, steps):
    rates = Rates()
    finetune(toy_config("adapter", epochs=2, warmup=warmup), tmp_path / "run", rates, toy_table())
    total = 2 * 7  # 108 training clips at batch 16
    assert len(rates.lrs) == total
    assert rates.lrs == pytest.approx([PEAK * lr_factor(s, total, steps) for s in range(total)], abs=1e-12)
    if steps:
        assert rates.lrs[:steps] == pytest.approx([PEAK * s / steps for s in range(steps)])
    # The last step's own rate: the cosine's last value before 0, not the 0 the schedule moves to after it.
    assert rates.lrs[-1] == pytest.approx(PEAK * lr_factor(total - 1, total, steps)) and rates.lrs[-1] > 0


def test_max_steps_overrides_epochs_and_the_schedule_spans_them(tmp_path):
    rates = Rates()
    _, metrics = finetune(toy_config("adapter", epochs=5, max_steps=10), tmp_path / "run", rates, toy_table())
    assert len(rates.lrs) == 10 and rates.epochs == [1, 2]  # 7 steps, then 3 of the second epoch
    assert rates.lrs == pytest.approx([PEAK * lr_factor(s, 10) for s in range(10)], abs=1e-12)
    fold = metrics.to_dict()["folds"]["all"]
    assert fold["epochs"][-1]["lr"] == pytest.approx(PEAK * lr_factor(9, 10)) and fold["test"]["epochs_trained"] == 2
    assert [e["lr"] for e in fold["epochs"]] == pytest.approx([rates.lrs[6], rates.lrs[9]])  # each epoch's last step
    longer = Rates()
    finetune(toy_config("adapter", epochs=1, max_steps=16), tmp_path / "longer", longer, toy_table())
    assert len(longer.lrs) == 16 and longer.epochs == [1, 2, 3]  # more epochs than --epochs: max_steps wins


def test_patience_stops_after_epochs_without_a_better_score_and_tests_the_best(tmp_path):
    # A learning rate too small to change a prediction: epoch 1 stays the best.
    rates = Rates()
    _, metrics = finetune(toy_config("adapter", epochs=6, patience=2, lr=1e-12), tmp_path / "run", rates,
                          toy_table())
    fold = metrics.to_dict()["folds"]["all"]
    assert rates.epochs == [1, 2, 3] and len(fold["epochs"]) == 3
    assert fold["test"]["best_epoch"] == 1 and fold["test"]["stopped_early"] is True
    assert fold["test"]["epochs_trained"] == 3 and fold["test"]["accuracy"] > 0
    assert any("early stop after epoch 3" in text for text in rates.messages)
    learning = finetune(toy_config("adapter", epochs=3, patience=2), tmp_path / "learning", table=toy_table())[1]
    assert learning.to_dict()["folds"]["all"]["test"]["stopped_early"] is False


class KillAtEpochEnd(Rates):
    """Kills the run once epoch ``at`` has ended (its resume state saved)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def epoch_end(self, fold, record):
        super().epoch_end(fold, record)
        if record.epoch == self.at:
            raise Kill


@pytest.mark.parametrize("at", [2, 3])
def test_an_early_stop_survives_a_kill_and_resume(tmp_path, at):
    config = toy_config("adapter", epochs=6, patience=2, lr=1e-12)
    _, straight = finetune(config, tmp_path / "straight", table=toy_table())
    with pytest.raises(Kill):
        finetune(config, tmp_path / "killed", KillAtEpochEnd(at), toy_table())
    rates = Rates()
    _, resumed = finetune(config, tmp_path / "killed", rates, toy_table())
    assert rates.epochs == list(range(at + 1, 4))  # killed after the stop (epoch 3): straight to the test
    assert _comparable(resumed) == _comparable(straight)


def test_warmup_of_fractional_steps_above_one_is_refused():
    with pytest.raises(SoftmoaError, match="whole optimiser steps"):  # ConfigError (reloaded by test_method_plugin)
        build_config({"data": {"dataset": "toy"}, "training": {"warmup": 2.5}})
