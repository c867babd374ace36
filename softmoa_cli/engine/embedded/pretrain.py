"""The embedded backbone: a small AST the tool pretrains itself; it ships in the package.

``softmoa pretrain-embedded`` makes it: masked spectrogram modelling (``masked.py``)
on two procedural sets, ``synth-speech`` (pseudo-words said by many synthetic voices) and
``synth-upstream`` (sound events), generated on first use. Its quality is recorded as the
test accuracy of a linear probe on the pseudo-words (``probe.py``) beside the final masked
loss. The package ships the result (``record.py``), checked against its record at
every use, so offline runs never pretrain and never use a damaged file. A user pretrains a
backbone on their own data with ``finetune --method full`` and then ``--checkpoint RUN_DIR``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..task import SINGLE
from ..config import DataConfig
from ..data.cache_open import open_dataset
from ..fsutil import atomic_write_json
from ..models.ast import AST, ASTConfig
from ..models.pretrained import OWN_CONFIG, OWN_WEIGHTS, Pretrained, own_backbone, save_model
from .record import RECORD, file_sha256
from .masked import Masking, MaskedRecipe, pretrain_masked
from .probe import linear_probe_accuracy
from ..train.progress import Callback

EMBEDDED_NAME = "synth-speech-ast-v2"
RECIPE = {
    "upstream": ["synth-speech", "synth-upstream"],  # the first also scores the linear probe
    "max_length": 100,
    # A 4-block AST of width 128 with 16x16 patches overlapping at stride 10: 12 x 9 = 108
    # tokens per second of audio.
    "ast": {"dim": 128, "depth": 4, "heads": 4, "mlp_dim": 512, "fstride": 10, "tstride": 10},
    "masked": {"epochs": 8, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1, "seed": 0,
               "time_span": 3, "freq_span": 3},
}


def pretrain_embedded(out: Path, recipe: dict | None = None, callback: Callback | None = None,
                      command: str | None = None) -> dict:
    """Pretrain a backbone by ``recipe`` (default ``RECIPE``) and publish it in ``out``: a
    softmoa model folder plus ``record.json``. The training state lives in ``.<out>.run/``
    beside it until the end (an interrupted pretraining resumes). Returns the record."""
    recipe = recipe or RECIPE
    callback = callback or Callback()
    out = Path(out).absolute()
    run_dir = out.with_name(f".{out.name}.run")
    run_dir.mkdir(parents=True, exist_ok=True)
    tables = [open_dataset(DataConfig(dataset=name, max_length=recipe["max_length"]), callback.message)
              for name in recipe["upstream"]]
    masked = dict(recipe["masked"])
    masking = Masking(masked.pop("time_span"), masked.pop("freq_span"))
    torch.manual_seed(masked["seed"])
    ast = AST(ASTConfig(**recipe["ast"], max_length=recipe["max_length"], num_classes=1, eps=1e-6))
    ast, history = pretrain_masked(ast, tables, MaskedRecipe(**masked, masking=masking), run_dir, callback)
    accuracy = linear_probe_accuracy(ast, tables[0])
    extra = {"has_head": False, "pretrained_on": " + ".join(recipe["upstream"]), "upstream_test_accuracy": accuracy,
             "masked_loss": history[-1]["loss"]}
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    save_model(Pretrained(ast, [], SINGLE, EMBEDDED_NAME, extra), staging)
    record = {"name": EMBEDDED_NAME, "file": OWN_WEIGHTS, "sha256": file_sha256(staging / OWN_WEIGHTS),
              "command": command or "pretrain_embedded() from Python", "seed": masked["seed"],
              "upstream": recipe["upstream"], "upstream_test_accuracy": accuracy,
              "upstream_classes": len(tables[0].label_names), "masked_loss": history[-1]["loss"],
              "history": history, "recipe": recipe}
    atomic_write_json(staging / RECORD, record)
    shutil.rmtree(out, ignore_errors=True)
    staging.replace(out)
    shutil.rmtree(run_dir, ignore_errors=True)
    return record


def describe(path: Path) -> str:
    """One line about the embedded backbone: dims and upstream probe accuracy."""
    meta = json.loads((path / OWN_CONFIG).read_text())
    ast, extra = own_backbone(meta)[1], meta.get("extra", {})
    accuracy = extra.get("upstream_test_accuracy")
    probe = f", linear probe {100 * accuracy:.1f}% on its pseudo-words" if accuracy is not None else ""
    return (f"embedded AST pretrained on {extra.get('pretrained_on', 'synthetic audio')} "
            f"(dim {ast['dim']}, depth {ast['depth']}{probe})")
