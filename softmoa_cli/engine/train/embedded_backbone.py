"""The embedded backbone: a small AST the tool pretrains itself, offline, on first use.

Full training on the ``synth-upstream`` task (12 procedural sound classes, none shared with
the downstream ``synth`` task), through the ordinary fine-tuning machinery, so it resumes
if interrupted. The result is saved once, in this tool's model format, under
``$SOFTMOA_HOME/checkpoints/<EMBEDDED_NAME>/`` and reused afterwards. A user pretrains a
backbone on their own data the same way: ``finetune --method full`` and then
``--checkpoint RUN_DIR``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..config import build_config
from ..fsutil import file_lock
from ..data.paths import checkpoints_dir
from ..models.pretrained import OWN_CONFIG, Pretrained, save_model
from .rundir import load_run
from .progress import Callback

EMBEDDED_NAME = "synth-ast-v1"
RECIPE = {
    # A 4-block AST of width 128 with non-overlapping 16x16 patches (50 tokens per second of
    # audio): small enough to pretrain in about two minutes on 2 CPU cores.
    "data": {"dataset": "synth-upstream", "max_length": 100},
    "model": {"checkpoint": "random",
              "random": {"dim": 128, "depth": 4, "heads": 4, "mlp_dim": 512, "fstride": 16, "tstride": 16}},
    "method": {"name": "full"},
    "training": {"epochs": 24, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.05, "seed": 0},
}


def embedded_path(home: Path | None = None) -> Path:
    return checkpoints_dir(home) / EMBEDDED_NAME


def embedded_backbone(home: Path | None = None, callback: Callback | None = None, recipe: dict | None = None) -> Path:
    """The embedded backbone's folder, pretraining it first if it is not there yet.

    Pretraining writes its run to ``.<name>.run/`` beside the final folder (an interrupted
    pretraining resumes), then publishes the model by renaming a finished copy into place.
    """
    final = embedded_path(home)
    if (final / OWN_CONFIG).is_file():
        return final
    callback = callback or Callback()
    recipe = recipe or RECIPE
    with file_lock(final.with_name(f".{final.name}.lock"), callback.message):
        if (final / OWN_CONFIG).is_file():  # built by another process while we waited
            return final
        callback.message(f"pretraining the embedded backbone on synth-upstream (once; saved to {final})")
        from .run import finetune

        # Alone: under torchrun only rank 0 gets here first (the others wait at a barrier), so
        # the pretraining must not use the process group.
        run_dir, metrics = finetune(build_config(recipe, source="embedded recipe"), final.with_name(f".{final.name}.run"),
                                    callback, alone=True)
        model, labels, _ = load_run(run_dir)
        staging = final.with_name(f".{final.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        extra = {"has_head": True, "pretrained_on": "synth-upstream",
                 "upstream_test_accuracy": metrics["summary"]["accuracy_mean"], "recipe": recipe}
        save_model(Pretrained(model, labels, False, EMBEDDED_NAME, extra), staging)
        staging.replace(final)
        shutil.rmtree(run_dir, ignore_errors=True)
    return final


def describe(path: Path) -> str:
    """One line about the embedded backbone: dims and upstream accuracy."""
    meta = json.loads((path / OWN_CONFIG).read_text())
    ast = meta["ast"]
    accuracy = meta.get("extra", {}).get("upstream_test_accuracy")
    upstream = f", {100 * accuracy:.1f}% on its upstream test set" if accuracy is not None else ""
    return f"embedded AST pretrained on synth-upstream (dim {ast['dim']}, depth {ast['depth']}{upstream})"
