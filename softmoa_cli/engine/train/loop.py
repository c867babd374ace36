"""Training one fold, as the recipe reads: AdamW with a warm-up and cosine schedule over all
optimiser steps, validation every epoch, the best epoch kept as a true copy, tested, and saved
as an adapter; resumable at any step (``fold_state.py``, ``resume_state.py``).

The task follows the table (``engine/task.py``): its loss, what a step counts as a hit, the
validation score that picks the best epoch (accuracy, or mAP) and, multi-label, the per-class
decision thresholds tuned on the validation clips and saved with the adapter files. Either task can balance its epochs, weight its classes and mix its
clips (``sampling.py``: ``training.balanced_sampling``, ``class_weights``, ``mixup``).

An optimiser step takes ``batch_size x accumulate`` clips (the effective batch): read together
(``data/loader.py``, by worker processes with ``training.workers``), moved to the device,
mixed and masked there, then run through the model in ``accumulate`` micro-batches of
``batch_size`` whose gradients add up (under DDP synchronised once, at the last). The schedule,
``max_steps`` and the saves of the resume state count optimiser steps. ``patience`` stops a fold after that
many epochs without a better validation score; the best epoch is tested as always.

``FoldTrainer.run``: for each epoch, ``train_step`` over the epoch's shuffled batches, then
``end_epoch`` (validate, keep the best, save the resume state); finally ``test_and_save``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import RunConfig
from ..data.augment import spec_augment
from ..data.loader import Read, batches
from ..data.splits import Split
from ..data.table import FeatureTable
from ..errors import SoftmoaError
from ..models.backbone import set_activation_checkpointing
from ..models.pretrained import Pretrained
from ..petl.adapter_files import AdapterInfo, load_tensors_, save_adapter, trainable_tensors
from ..petl.build import build_model
from ..distributed import World
from ..devices import Precision
from ..scoring.evaluation import score_indices
from ..runs.results import EpochRow, FoldResult
from .fold_state import Best, FoldState, Running
from .optim import make_optimizer, make_scheduler
from .progress import Callback, StepInfo
from .resume_state import clear_state, load_state, save_state
from .sampling import class_weights, epoch_order, mixup, sample_weights
from .tracking import Tracker, open_tracker


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


@dataclass
class Session:
    """This process's steps and clips since it started the fold (its rates), and when."""

    started: float
    steps: int = 0
    samples: int = 0


class FoldTrainer:
    """One fold's model, optimiser, schedule and state, built (or restored) from a ``FoldJob``."""

    def __init__(self, job: FoldJob):
        self.job, self.t, self.world = job, job.config.training, job.world
        self.table = job.table.as_task(job.config.data.task_of(job.table.labels))
        self.task = self.table.task
        self.fold = job.split.fold or 0
        self.effective = self.t.batch_size * self.t.accumulate  # clips per optimiser step
        self.steps = math.ceil(len(job.split.train) / self.effective)  # optimiser steps per epoch
        self.total_steps = self.t.max_steps or self.steps * self.t.epochs
        self.epochs = math.ceil(self.total_steps / self.steps)  # max_steps: as many as they need, the last partial
        classes, train_labels = len(self.table.label_names), self.table.labels[job.split.train]
        # Balanced sampling: per training clip drawing weights; class weights: [classes] on the device.
        self.sample_weights = sample_weights(train_labels, classes) if self.t.balanced_sampling else None
        self.class_weights = (torch.tensor(class_weights(train_labels, classes), dtype=torch.float32,
                                           device=self.world.device) if self.t.class_weights else None)
        torch.manual_seed(step_seed(self.t.seed, self.fold, 1 << 30))  # head and adapter init
        self.model = build_model(copy.deepcopy(job.backbone), job.config.method, len(self.table.label_names),
                                 self.table.feature_config.max_length).to(self.world.device)
        set_activation_checkpointing(self.model, self.t.activation_checkpointing)
        self.optimizer = make_optimizer(self.model, self.t, self.t.learning_rate(job.config.method.name))
        self.scheduler = make_scheduler(self.optimizer, self.total_steps, self.t.warmup_steps(self.total_steps))
        # fp16: the loss is scaled so small gradients survive float16; the scale adapts (resume state).
        self.scaler = torch.amp.GradScaler(self.world.device.type) if self.t.precision == "fp16" else None
        self.state = self._restore()
        self.compiled = torch.compile(self.model) if self.t.compile else self.model
        self.net = self.compiled
        if self.world.size > 1:
            ids = [self.world.device] if self.world.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.compiled, device_ids=ids)
        self.precision = Precision(self.t.precision, self.world.device)
        self.scoring = Precision("fp32", self.world.device)  # validation and test score as evaluate and predict do
        self.stream = None  # during ``run``: the loader's batches of the current epoch, in step order

    def _restore(self) -> FoldState:
        saved = load_state(self.job.directory)
        if saved is None:
            return FoldState(best=Best(tensors=trainable_tensors(self.model)))
        load_tensors_(self.model, saved["trainable"], str(self.job.directory))
        try:
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            if self.scaler is not None:
                self.scaler.load_state_dict(saved["scaler"])
        except (ValueError, KeyError):
            raise SoftmoaError(f"{self.job.directory}: the saved resume state does not fit this version's optimiser, "
                               "schedule or gradient scaler; start the run again in a new folder") from None
        return FoldState.from_dict(saved, self.task.metric)

    def save(self) -> None:
        """Write the resume state (rank 0) at the state's position."""
        if self.world.main:
            scaler = {} if self.scaler is None else {"scaler": self.scaler.state_dict()}
            save_state(self.job.directory, self.state.to_dict() | {
                "trainable": trainable_tensors(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()} | scaler)

    @property
    def stopped_early(self) -> bool:
        """``patience`` epochs done since the best one, with epochs left: no more of them (derived
        from the state, so a resumed run stops where the uninterrupted one did)."""
        t, state = self.t, self.state
        return t.patience is not None and state.epoch - state.best.epoch >= t.patience and state.epoch < self.epochs

    def run(self, callback: Callback, record) -> FoldResult:
        """Train the remaining epochs (fewer after an early stop), then test the best one;
        ``record(history, result=None)`` persists metrics. Returns the fold's test result."""
        job = self.job
        tracker = open_tracker(job.config, job.directory, job.split.fold) if self.world.main else Tracker()
        try:
            if self.world.main:
                callback.fold_start(job.split.fold, job.folds, self.epochs, self.steps)
            session = Session(time.perf_counter())
            for epoch in range(self.state.epoch, self.epochs):
                if self.stopped_early:
                    break
                epoch_start = time.perf_counter()
                self.train_epoch(epoch, session, callback, tracker)
                self.state.seconds += time.perf_counter() - epoch_start
                entry = self.end_epoch(epoch, epoch_start)
                if self.world.main:
                    record(self.state.history)
                    callback.epoch_end(job.split.fold, entry)
                    tracker.scalars({f"epoch/{k}": v for k, v in entry.to_dict().items() if k != "epoch"},
                                    epoch * self.steps + self._epoch_steps(epoch))
            if self.stopped_early and self.world.main:
                callback.message(f"{self._where}early stop after epoch {self.state.epoch}: no better validation "
                                 f"{self.task.metric} "
                                 f"for {self.t.patience} epoch{'s' * (self.t.patience != 1)}")
            return self.test_and_save(callback, record)
        finally:
            tracker.close()

    def train_epoch(self, epoch: int, session: Session, callback: Callback, tracker: Tracker) -> None:
        """The epoch's remaining optimiser steps, from the state's position, with progress and
        saves of the resume state."""
        t, train = self.t, self.job.split.train
        order = epoch_order(len(train), t.seed, self.fold, epoch, self.sample_weights)
        steps = self._epoch_steps(epoch)
        plan = [train[order[step * self.effective:(step + 1) * self.effective]] for step in range(steps)]
        reads = [Read(plan[step], step_seed(t.seed, self.fold, epoch, step, 3))  # crops seeded as in ``_read``
                 for step in range(self.state.step, steps)]
        self.stream = batches(self.table, reads, t.workers, pin=self.world.device.type == "cuda")
        try:
            for step in range(self.state.step, steps):
                self.state.running.add(self.train_step(plan[step], epoch, step))
                session.steps, session.samples = session.steps + 1, session.samples + len(plan[step])
                if self.world.main:
                    info = self._step_info(epoch, step, session)
                    callback.step(info)
                    tracker.scalars(info.scalars(), epoch * self.steps + step + 1)
                if (step + 1) % t.resume_every == 0 and step + 1 < steps:
                    self.state.step = step + 1
                    self.save()
        finally:
            self.stream = None

    def _epoch_steps(self, epoch: int) -> int:
        """Optimiser steps in epoch ``epoch``: all of them, or up to ``max_steps`` in the last."""
        return min(self.steps, self.total_steps - epoch * self.steps)

    def train_step(self, batch: np.ndarray, epoch: int, step: int) -> list[float]:
        """One optimiser step on the effective ``batch`` (clip indices, the same on every rank),
        in micro-batches of ``batch_size`` of which each rank takes its share. Returns
        ``[loss sum, correct, clips]`` summed over ranks."""
        t, world = self.t, self.world
        self.net.train()
        torch.manual_seed(step_seed(t.seed, self.fold, epoch, step))
        x, y = self._read(batch, epoch, step)
        x, target, y = self._augment(x.to(world.device, non_blocking=True), y.to(world.device, non_blocking=True),
                                     epoch, step)
        sums = torch.zeros(3, dtype=torch.float64, device=world.device)
        starts = range(0, len(batch), t.batch_size)
        for start in starts:
            rows = slice(start, start + t.batch_size)
            with self._sync(last=start == starts[-1]):
                sums += self._forward_backward(*(self._share(v, rows) for v in (x, target, y)), len(batch))
        self._optimizer_step()
        return world.sum(sums).tolist()

    def _share(self, tensor: torch.Tensor, rows: slice) -> torch.Tensor:
        """This rank's clips of the micro-batch ``rows`` of ``tensor``."""
        return tensor[rows][self.world.rank::self.world.size]

    def _read(self, batch: np.ndarray, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[b, *window]`` float32 (a random crop of each long clip) and targets
        (``[b]`` int64 or ``[b, classes]`` multi-hot) of ``batch``, on the CPU: the loader's
        next batch during ``run`` (its wait added to the epoch's ``data_wait``), else read now."""
        if self.stream is None:
            crops = torch.Generator().manual_seed(step_seed(self.t.seed, self.fold, epoch, step, 3))
            return self.table.crop_batch(batch, crops)
        waiting = time.perf_counter()
        x, y = next(self.stream)
        self.state.running.data_wait += time.perf_counter() - waiting
        return x, y

    def _augment(self, x: torch.Tensor, y: torch.Tensor, epoch: int,
                 step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixup and SpecAugment of the whole effective batch on its device (draws seeded by the
        step, as on one process). Returns ``(x, target, y)``: target is what the loss compares
        with (``y``, or the mixed label vectors), ``y`` what "correct" counts."""
        t, masks = self.t, self.job.config.data.spec_augment
        target = y
        if t.mixup:  # before SpecAugment, as AST masks the mixed clip
            mixed = mixup(x, y, len(self.table.label_names), t.mixup, step_seed(t.seed, self.fold, epoch, step, 2),
                          self.task)
            # The running accuracy counts against the dominant clip's label(s) (lam >= 0.5: the clip
            # itself, else its partner), as a mixed clip has no single true label.
            x, target, y = mixed.x, mixed.targets, mixed.dominant
        if masks.freq_mask or masks.time_mask:
            generator = torch.Generator().manual_seed(step_seed(t.seed, self.fold, epoch, step, 1))
            x = spec_augment(x, masks.freq_mask, masks.time_mask, generator)
        return x, target, y

    def _sync(self, last: bool):
        """DDP averages gradients over ranks at the last micro-batch only (``no_sync`` before)."""
        return contextlib.nullcontext() if last or self.world.size == 1 else self.net.no_sync()

    def _forward_backward(self, x: torch.Tensor, target: torch.Tensor, y: torch.Tensor, clips: int) -> torch.Tensor:
        """Forward and backward of this rank's share of a micro-batch, ``x [m, *window]``;
        the loss is its sum / the effective batch's ``clips`` x world, so that the micro-batches'
        gradients, summed and averaged by DDP, are those of the effective batch's mean. Returns
        ``[loss sum, correct, clips]`` of the share (float64, on the device)."""
        world = self.world
        with self.precision():
            logits = self.net(x).float()  # [m, classes]
        losses = self.task.losses(logits, target, self.class_weights)  # [m]
        correct = self.task.hits(logits, y)
        loss = losses.sum() * world.size / clips
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()
        return torch.stack([losses.detach().sum().double(), correct.double(),
                            torch.tensor(float(len(y)), dtype=torch.float64, device=y.device)])

    def _optimizer_step(self) -> None:
        """Apply the summed gradients (fp16: unscaled, the step skipped when they overflowed) at
        the schedule's rate for this step (kept as ``state.lr``), advance the schedule, clear the
        gradients."""
        self.state.lr = self.scheduler.get_last_lr()[0]
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _step_info(self, epoch: int, step: int, session: Session) -> StepInfo:
        """Progress after a step; rates over this session's steps (validation time included)."""
        running = self.state.running
        remaining = self.total_steps - epoch * self.steps - step - 1
        elapsed = time.perf_counter() - session.started
        return StepInfo(self.job.split.fold, epoch + 1, self.epochs, step + 1, self.steps, running.mean_loss,
                        running.accuracy, self.state.lr, session.samples / elapsed,
                        elapsed / session.steps * remaining, self.task.hit, running.data_wait)

    def end_epoch(self, epoch: int, epoch_start: float) -> EpochRow:
        """Validate, keep the best epoch's tensors, start the next epoch's sums, save the resume state."""
        state = self.state
        valid = score_indices(self.compiled, self.table, self.job.split.valid, self._eval_batch, self.world,
                              self.scoring)
        entry = EpochRow(epoch + 1, state.running.mean_loss, state.running.accuracy, valid.loss, valid.score, state.lr,
                         time.perf_counter() - epoch_start, state.running.data_wait, self.task.metric)
        state.history.append(entry)
        if entry.valid_score > state.best.score:
            thresholds = self.task.tune_thresholds(valid.probabilities, valid.targets)
            state.best = Best(epoch + 1, entry.valid_score, trainable_tensors(self.model), thresholds)
        state.epoch, state.step, state.running = epoch + 1, 0, Running()
        self.save()
        return entry

    def test_and_save(self, callback: Callback, record) -> FoldResult:
        """Test the best epoch's copy (multi-label: F1 at its tuned thresholds), save it as the
        fold's adapter files, drop the resume state."""
        job, best = self.job, self.state.best
        load_tensors_(self.model, best.tensors, "best epoch")
        test = score_indices(self.compiled, self.table, job.split.test, self._eval_batch, self.world, self.scoring)
        result = FoldResult(job.split.fold, best.epoch, best.score, test.metrics(best.thresholds),
                            sum(p.numel() for p in self.model.parameters() if p.requires_grad), self.state.seconds,
                            self.state.epoch, sum(self._epoch_steps(epoch) for epoch in range(self.state.epoch)),
                            self.stopped_early, metric=self.task.metric)
        if self.world.main:
            info = AdapterInfo(job.backbone_reference, job.config.method.model_dump(mode="json"),
                               self.table.label_names, self.table.feature_config, self.task, best.thresholds)
            result.adapter_bytes = save_adapter(job.directory, best.tensors, info)
            record(self.state.history, result)
            clear_state(job.directory)
            callback.fold_end(job.split.fold, result)
        self.world.barrier()
        return result

    @property
    def _where(self) -> str:
        """``fold K: `` for a fold of a k-fold run (a message then says which fold), else nothing."""
        return "" if self.job.split.fold is None else f"fold {self.job.split.fold}: "

    @property
    def _eval_batch(self) -> int:
        return self.t.eval_batch_size or 2 * self.t.batch_size


def train_fold(job: FoldJob, callback: Callback, record) -> FoldResult:
    """Train, select and test one fold; ``record(history, result=None)`` persists metrics.

    Returns the fold's test result. A fold with a saved state continues where it stopped.
    """
    return FoldTrainer(job).run(callback, record)
