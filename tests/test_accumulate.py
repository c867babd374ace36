"""Gradient accumulation: N micro-batches of batch_size make one optimiser step on batch_size x N
clips, the same step as one batch of that size (SpecAugment and mixup drawn over the whole
effective batch, as for the one batch)."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_config, toy_table
from safetensors.torch import load_file

from softmoa_cli.engine.train import Callback, finetune


class Steps(Callback):
    """The optimiser steps each epoch has, and how many ran."""

    per_epoch, ran = 0, 0

    def fold_start(self, fold, folds, epochs, steps):
        self.per_epoch = steps

    def step(self, info):
        self.ran += 1


def trained(tmp_path, name: str, data: dict, **training) -> tuple[dict, Steps, dict]:
    """A 1-epoch toy run: its fold's metrics, its step counts, its adapter tensors."""
    steps = Steps()
    _, metrics = finetune(toy_config("soft", data=data, epochs=1, **training), tmp_path / name, steps, toy_table())
    return metrics.to_dict()["folds"]["all"], steps, load_file(str(tmp_path / name / "adapter.safetensors"))


@pytest.mark.parametrize("data", [{}, {"spec_augment": {"freq_mask": 6, "time_mask": 10}}], ids=["plain", "specaug"])
def test_accumulating_4_micro_batches_of_8_equals_one_batch_of_32(tmp_path, data):
    # mixup too: it mixes clips across the micro-batches, as within the one batch.
    one, one_steps, one_tensors = trained(tmp_path, "one", data, batch_size=32, mixup=0.4)
    four, four_steps, four_tensors = trained(tmp_path, "four", data, batch_size=8, accumulate=4, mixup=0.4)
    # 108 training clips, 32 per optimiser step: 4 steps an epoch (the last of 12 clips: micro-batches of 8 and 4).
    assert one_steps.per_epoch == four_steps.per_epoch == 4 and four_steps.ran == 4
    for a, b in zip(one["epochs"], four["epochs"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-12)
        assert b["valid_accuracy"] == a["valid_accuracy"]
    assert four["test"]["accuracy"] == one["test"]["accuracy"]
    assert one_tensors.keys() == four_tensors.keys()
    assert all(torch.allclose(one_tensors[k], four_tensors[k], atol=1e-5) for k in one_tensors)


def test_an_accumulated_run_differs_from_its_micro_batch_alone(tmp_path):
    """The control: batch 8 without accumulation takes 14 steps an epoch and ends elsewhere."""
    _, eight, eight_tensors = trained(tmp_path, "eight", {}, batch_size=8)
    _, four, four_tensors = trained(tmp_path, "four", {}, batch_size=8, accumulate=4)
    assert (eight.per_epoch, four.per_epoch) == (14, 4)
    assert not all(torch.allclose(eight_tensors[k], four_tensors[k], atol=1e-5) for k in eight_tensors)


def test_activation_checkpointing_is_set_on_the_model_and_steps_the_same(tmp_path):
    from softmoa_cli.engine.data.splits import plan_splits
    from softmoa_cli.engine.models.ast import AST
    from softmoa_cli.engine.train.backbone import resolve_backbone
    from softmoa_cli.engine.distributed import World
    from softmoa_cli.engine.train.loop import FoldJob, FoldTrainer

    table, losses = toy_table(), []
    for on in (False, True):
        config = toy_config("soft", activation_checkpointing=on)
        split, = plan_splits(table, config.data)
        backbone = resolve_backbone(config.model, table.feature_config, config.training.seed)
        tr = FoldTrainer(FoldJob(config, table, split, backbone.pretrained, "random", tmp_path / str(on), World()))
        assert [m.activation_checkpointing for m in tr.model.modules() if isinstance(m, AST)] == [on]
        losses.append(tr.train_step(split.train[:16], 0, 0)[0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
