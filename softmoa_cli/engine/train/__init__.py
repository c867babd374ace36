"""Fine-tuning: the training loop, run folders, adapter checkpoints and resume.

Public API::

    finetune(config, run_dir=None, callback=None, table=None) -> (run_dir, metrics)
    load_run(run_dir, fold=None) -> (model, label_names, feature_config)
    latest_run(root="runs") -> Path | None

The names load on first use (they import torch), so that ``train.jobs`` checks a command's
flags and presets before torch is imported.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "latest_run": ".rundir", "load_run": ".rundir", "Split": "..data.splits", "plan_splits": "..data.splits",
    "FeatureTable": "..data.table", "Callback": ".progress", "StepInfo": ".progress", "finetune": ".run",
}

__all__ = ["Callback", "FeatureTable", "Split", "StepInfo", "finetune", "latest_run", "load_run",
           "plan_splits"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
