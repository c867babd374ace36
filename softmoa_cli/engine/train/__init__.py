"""Fine-tuning: what a command trains (``jobs``), a whole run (``run``), one fold's loop
(``loop``) and where it stands (``fold_state``), its optimiser and schedule, sampling, the
resume state, trackers and progress.

Public API::

    finetune(config, run_dir=None, callback=None, table=None) -> (run_dir, RunMetrics)

(a run read back: ``engine.runs.run.Run.open(folder or hub id)``.)

The names load on first use (they import torch), so that ``train.planning`` checks a command's
flags and presets before torch is imported.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"Callback": ".progress", "StepInfo": ".progress", "finetune": ".run"}

__all__ = ["Callback", "StepInfo", "finetune"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
