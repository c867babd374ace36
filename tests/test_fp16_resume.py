"""--precision fp16: float16 autocast with a gradient scaler (here on the CPU, as torch allows);
the scaler's state is part of the resume state, so a killed run resumes to the same result."""

from __future__ import annotations

import pytest
import torch
from helpers import Kill, KillAt, _comparable, toy_config, toy_table

from softmoa_cli.engine.data.splits import plan_splits
from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.train.backbone import resolve_backbone
from softmoa_cli.engine.distributed import World
from softmoa_cli.engine.train.loop import FoldJob, FoldTrainer
from softmoa_cli.engine.train.resume_state import load_state


def trainer(directory, config, table) -> FoldTrainer:
    """The fold trainer a run in ``directory`` builds (restoring its resume state)."""
    split, = plan_splits(table, config.data)
    backbone = resolve_backbone(config.model, table.feature_config, config.training.seed)
    return FoldTrainer(FoldJob(config, table, split, backbone.pretrained, "random", directory, World()))


def test_fp16_resume_restores_the_gradient_scaler_and_the_run(tmp_path):
    table = toy_table()
    config = toy_config("soft", precision="fp16", epochs=2)
    _, straight = finetune(config, tmp_path / "straight", table=table)
    with pytest.raises(Kill):
        finetune(config, tmp_path / "killed", KillAt(6), table)  # after the checkpoint at step 4
    saved = load_state(tmp_path / "killed")
    assert saved["step"] == 4 and set(saved["scaler"]) >= {"scale", "_growth_tracker"}
    fresh = torch.amp.GradScaler("cpu").state_dict()
    assert saved["scaler"] != fresh  # four fp16 steps moved the scale or its growth count: a reset would show
    restored = trainer(tmp_path / "killed", config, table)
    assert restored.scaler.state_dict() == saved["scaler"]
    _, resumed = finetune(config, tmp_path / "killed", table=table)
    assert _comparable(resumed) == _comparable(straight)


def test_fp16_steps_run_under_float16_autocast(tmp_path):
    table = toy_table()
    tr = trainer(tmp_path, toy_config("soft", precision="fp16"), table)
    with tr.precision():
        x, _ = table.batch(tr.job.split.train[:4])
        assert tr.model(x).dtype == torch.float16
    loss, correct, clips = tr.train_step(tr.job.split.train[:16], 0, 0)
    assert clips == 16 and loss > 0 and tr.scaler.get_scale() > 0
