"""Fine-tuning: the training loop, run folders, adapter checkpoints and resume.

Public API::

    finetune(config, run_dir=None, callback=None, table=None) -> (run_dir, metrics)
    load_run(run_dir, fold=None) -> (model, label_names, feature_config)
    latest_run(root="runs") -> Path | None
"""

from .rundir import latest_run, load_run
from ..data.splits import Split, plan_splits
from ..data.table import FeatureTable
from .progress import Callback, StepInfo
from .run import finetune

__all__ = ["Callback", "FeatureTable", "Split", "StepInfo", "finetune", "latest_run", "load_run",
           "plan_splits"]
