"""A whole fine-tuning run: data, backbone, every fold, the summary over folds."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.splits import check_plans, plan_splits
from ..data.table import FeatureTable
from ..devices import resolve_device
from ..distributed import World, setup
from ..petl.methods import with_backbone_defaults
from ..runs.folder import RunFolder, default_run_dir
from ..runs.model_card import write_model_card
from ..runs.results import RunMetrics
from ..runs.files import RANDOM_DIR
from .backbone import check_front_end, front_end, resolve_backbone, save_random_backbone
from .loop import FoldJob, train_fold
from .progress import Callback


def finetune(config: RunConfig, run_dir: str | Path | None = None, callback: Callback | None = None,
             table: FeatureTable | None = None, *, alone: bool = False,
             command: str | None = None) -> tuple[Path, RunMetrics | None]:
    """Train ``config`` into ``run_dir`` (default ``runs/<dataset>-<method>-<time>``); if the
    folder holds an unfinished run of the same config, continue it. ``table``: features to
    use instead of opening (and if needed preparing) the data set's cache.

    Returns the run folder and its metrics (``RunMetrics``: per fold and epoch, and the summary
    over folds; None on ranks other than 0).
    Under ``torchrun`` every process calls this; only rank 0 writes and reports. ``alone``:
    train in this process only, even under ``torchrun`` (rank 0 pretraining the embedded
    backbone while the other ranks wait). ``command``: the command line that asked for the run,
    for its model card (``README.md``, written when the run finishes; None: trained from Python).
    """
    callback = callback or Callback()
    training = config.training
    if training.threads:
        torch.set_num_threads(training.threads)
    world = World(device=resolve_device(training.device)) if alone else setup(training.device)
    given = None if run_dir is None else Path(run_dir)
    features, features_said = front_end(config.model)
    if table is None:
        from ..data.cache_open import open_dataset

        table = _main_first(world, lambda: open_dataset(config.data, callback.message, front_end=features))
    table = table.as_task(config.data.task_of(table.labels))
    say = callback.message if world.main else lambda text: None
    splits = plan_splits(table, config.data)
    check_plans(table, splits, say)  # data that cannot work: refused or said before anything else
    # On first use rank 0 pretrains the embedded backbone here, alone, while the others wait at
    # the barrier (within the group's timeout: 30 min by default with gloo, 10 with NCCL).
    backbone = _main_first(world, lambda: resolve_backbone(config.model, table.feature_config, training.seed,
                                                          callback, given))
    check_front_end(backbone, table.feature_config)
    config, said = derived_config(config, table, backbone.pretrained.model.config.dim)
    for line in [backbone.description, *([features_said] if features_said else []), *said]:
        say(line)
    if backbone.advice and world.main:
        callback.advise(backbone.advice)
    # The folder is named for the time the run starts: once its data and backbone are ready.
    run_dir = Path(_agree(world, str(given or default_run_dir(config))))
    folder = RunFolder(run_dir)
    if world.main:
        folder.start(config, [s.fold for s in splits], backbone.reference, table.task, command)
        save_random_backbone(backbone, run_dir)
    for split in splits:
        directory = folder.fold_dir(split.fold)
        if folder.done(split.fold):
            continue  # finished before an interruption
        reference = backbone.reference
        if reference == RANDOM_DIR:
            reference = os.path.relpath(run_dir / RANDOM_DIR, directory)
        job = FoldJob(config, table, split, backbone.pretrained, reference, directory, world, len(splits))
        train_fold(job, callback, lambda history, result=None, fold=split.fold: folder.record(fold, history, result))
    metrics = None
    if world.main:
        metrics = folder.finish()
        write_model_card(run_dir)
    world.close()
    return run_dir, metrics


def derived_config(config: RunConfig, table: FeatureTable, dim: int) -> tuple[RunConfig, list[str]]:
    """``config`` with the defaults that depend on the data and the backbone filled in, so the
    run records what it trained with: ``data.max_length`` of the feature table (derived from
    the clip durations for users' data, said when the table was opened) and a reduction rate
    for the backbone's width ``dim`` (said here: the lines returned, with what SpecAugment does
    on waveform windows)."""
    method, said = with_backbone_defaults(config.method, dim)
    data = config.data.model_copy(update={"max_length": table.feature_config.max_length})
    lines = [said] if said else []
    if table.feature_config.kind == "waveform" and config.data.spec_augment.freq_mask:
        lines.append("spec_augment: waveform windows have no frequency axis, so only the time mask applies "
                     "(stretches of samples set to 0)")
    return config.model_copy(update={"data": data, "method": method}), lines


def _main_first(world: World, make):
    """Run ``make`` on rank 0 first (it may write caches or files), then on the others."""
    if not world.main:
        world.barrier()
    value = make()
    if world.main:
        world.barrier()
    return value


def _agree(world: World, value: str) -> str:
    """Rank 0's value on every rank (e.g. a time-stamped folder name)."""
    if world.size == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
