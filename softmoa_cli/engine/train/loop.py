"""Training one fold: AdamW + cosine over all steps, validation every epoch, the best epoch
kept as a true copy, tested, and saved as an adapter checkpoint; resumable at any step."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import RunConfig
from ..petl.build import build_model
from ..data.augment import spec_augment
from ..models.pretrained import Pretrained
from ..petl.adapter_files import load_tensors_, save_adapter, trainable_tensors
from ..data.splits import Split
from ..data.table import FeatureTable
from .distributed import World
from .evaluation import Precision, evaluate_indices
from .metrics import accuracy, macro_f1
from .optim import make_optimizer, make_scheduler
from .progress import Callback, StepInfo
from .resume_state import clear_state, load_state, save_state


def step_seed(*keys: int) -> int:
    """A 63-bit seed derived from (seed, fold, epoch, step, ...): draws that do not depend on
    what ran before, so a resumed run and every DDP rank draw the same numbers."""
    return int(np.random.SeedSequence([k & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint64)[0] >> 1)


@dataclass
class FoldJob:
    config: RunConfig
    table: FeatureTable
    split: Split
    backbone: Pretrained
    backbone_reference: str  # as adapter.json stores it, relative to ``directory`` when local
    directory: Path
    world: World
    folds: int = 1


def train_fold(job: FoldJob, callback: Callback, record) -> dict:
    """Train, select and test one fold; ``record(history, result=None)`` persists metrics.

    Returns the fold's test result. A fold with a saved state continues where it stopped.
    """
    config, t, world, table = job.config, job.config.training, job.world, job.table
    fold = job.split.fold or 0
    train = job.split.train
    steps = math.ceil(len(train) / t.batch_size)
    total = steps * t.epochs
    eval_batch = t.eval_batch_size or 2 * t.batch_size

    torch.manual_seed(step_seed(t.seed, fold, 1 << 30))  # head and adapter init
    model = build_model(copy.deepcopy(job.backbone), config.method, len(table.label_names),
                        table.feature_config.max_length).to(world.device)
    optimizer = make_optimizer(model, t, t.learning_rate(config.method.name))
    scheduler = make_scheduler(optimizer, total)
    state = load_state(job.directory) or {
        "epoch": 0, "step": 0, "running": [0.0, 0, 0], "history": [], "seconds": 0.0,
        "best": {"epoch": 0, "valid_accuracy": -1.0, "tensors": trainable_tensors(model)}}
    if "optimizer" in state:
        load_tensors_(model, state["trainable"], str(job.directory))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    compiled = torch.compile(model) if t.compile else model
    net = compiled
    if world.size > 1:
        ids = [world.device] if world.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(compiled, device_ids=ids)
    precision = Precision(t.precision, world.device)
    scoring = Precision("fp32", world.device)  # validation and test score as evaluate and predict do

    def checkpoint(epoch: int, step: int) -> None:
        if world.main:
            save_state(job.directory, state | {
                "epoch": epoch, "step": step, "trainable": trainable_tensors(model),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})

    if world.main:
        callback.fold_start(job.split.fold, job.folds, t.epochs, steps)
    session_start, session_steps = time.perf_counter(), 0
    for epoch in range(state["epoch"], t.epochs):
        epoch_start = time.perf_counter()
        order = np.random.default_rng([t.seed, fold, epoch]).permutation(len(train))
        for step in range(state["step"], steps):
            net.train()
            batch = train[order[step * t.batch_size:(step + 1) * t.batch_size]]
            torch.manual_seed(step_seed(t.seed, fold, epoch, step))
            x, y = table.batch(batch)
            masks = config.data.spec_augment
            if masks.freq_mask or masks.time_mask:
                generator = torch.Generator().manual_seed(step_seed(t.seed, fold, epoch, step, 1))
                x = spec_augment(x, masks.freq_mask, masks.time_mask, generator)
            x = x[world.rank::world.size].to(world.device)
            y = y[world.rank::world.size].to(world.device)
            with precision():
                logits = net(x).float()
            losses = F.cross_entropy(logits, y, reduction="none")
            # Sum over this rank's share / global batch * world: DDP's average then equals the global mean.
            (losses.sum() * world.size / len(batch)).backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            # [loss sum, correct, clips] of this rank, summed over ranks: one device-to-host copy a step.
            sums = world.sum(torch.stack([losses.detach().sum().double(), (logits.detach().argmax(-1) == y).sum().double(),
                                          torch.tensor(float(len(y)), dtype=torch.float64, device=y.device)]))
            running = state["running"] = [a + b for a, b in zip(state["running"], sums.tolist())]
            session_steps += 1
            if world.main:
                elapsed = time.perf_counter() - session_start
                per_step = elapsed / session_steps
                callback.step(StepInfo(job.split.fold, epoch + 1, t.epochs, step + 1, steps,
                                       running[0] / running[2], running[1] / running[2], scheduler.get_last_lr()[0],
                                       len(batch) / per_step, per_step * (total - epoch * steps - step - 1)))
            if (step + 1) % t.checkpoint_every == 0 and step + 1 < steps:
                state["step"] = step + 1
                checkpoint(epoch, step + 1)
        state["seconds"] += time.perf_counter() - epoch_start
        totals = state["running"]
        confusion, valid_loss = evaluate_indices(compiled, table, job.split.valid, eval_batch, world, scoring)
        entry = {"epoch": epoch + 1, "train_loss": totals[0] / totals[2], "train_accuracy": totals[1] / totals[2], "valid_loss": valid_loss,
                 "valid_accuracy": accuracy(confusion), "lr": scheduler.get_last_lr()[0],
                 "seconds": time.perf_counter() - epoch_start}
        state["history"].append(entry)
        if entry["valid_accuracy"] > state["best"]["valid_accuracy"]:
            state["best"] = {"epoch": epoch + 1, "valid_accuracy": entry["valid_accuracy"],
                             "tensors": trainable_tensors(model)}
        state["running"], state["step"] = [0.0, 0, 0], 0
        checkpoint(epoch + 1, 0)
        if world.main:
            record(state["history"])
            callback.epoch_end(job.split.fold, entry)

    load_tensors_(model, state["best"]["tensors"], "best epoch")
    confusion, test_loss = evaluate_indices(compiled, table, job.split.test, eval_batch, world, scoring)
    result = {"fold": job.split.fold, "best_epoch": state["best"]["epoch"],
              "valid_accuracy": state["best"]["valid_accuracy"], "accuracy": accuracy(confusion),
              "macro_f1": macro_f1(confusion), "loss": test_loss, "clips": int(confusion.sum()),
              "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "train_seconds": state["seconds"]}
    if world.main:
        result["checkpoint_bytes"] = save_adapter(job.directory, state["best"]["tensors"], job.backbone_reference,
                                                  config.method, table.label_names, table.feature_config)
        record(state["history"], result)
        clear_state(job.directory)
        callback.fold_end(job.split.fold, result)
    world.barrier()
    return result
