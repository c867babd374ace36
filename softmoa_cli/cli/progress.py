"""Rich progress for the engine's callbacks: training (finetune, ablate), downloads, feature caches."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text

from ..engine.train.progress import Callback
from .console import advise, err, note


def training_progress(show: bool):
    """A context giving the engine's training callback: the rich view, or (``show`` false, as on
    ranks other than 0) a silent one."""
    if show:
        return TrainingProgress()
    from contextlib import nullcontext

    return nullcontext(Callback())


def live_bar():
    """The live bar of the current fold: step, counts and times whole, stats ending in "…"."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Column

    # One line at any width: the counts and times whole, the stats (last, taking what is left) end in "…".
    whole = Column(no_wrap=True)
    return Progress(TextColumn("{task.description}", table_column=whole), BarColumn(bar_width=16),
                    MofNCompleteColumn(table_column=whole), TimeElapsedColumn(table_column=whole),
                    TextColumn("{task.fields[eta]}", table_column=whole),
                    TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                    console=err, transient=True, expand=True)


class EpochLines(Callback):
    """The engine's training events as plain lines (one per epoch and per fold), with the live
    bar of ``progress`` (None outside a terminal) updated at each step."""

    task = None
    where = ""  # "fold k/N · " for k-fold runs
    epochs = 0
    started = 0.0
    last = None  # the fold's latest StepInfo

    def __init__(self, progress):
        self.progress = progress

    def fold_start(self, fold, folds, epochs, steps):
        self.where = "" if fold is None else f"fold {fold}/{folds} · "
        self.epochs, self.started, self.last = epochs, time.perf_counter(), None
        if self.progress is not None:
            self.task = self.progress.add_task(self.where.removesuffix(" · ") or "train", total=epochs * steps,
                                          eta="", stats="")

    def step(self, info):
        self.last = info
        if self.progress is not None and self.task is not None:
            done = (info.epoch - 1) * info.steps + info.step
            self.progress.update(self.task, completed=done, eta=f"ETA {duration(info.eta_s)}", stats=(
                f"epoch {info.epoch}/{info.epochs} · loss {info.loss:.4f} · {info.hit} {info.accuracy:.3f} · "
                f"{info.samples_per_s:.0f} samples/s · data wait {info.data_wait_s:.1f} s"))

    def epoch_end(self, fold, row):
        rate = f" · {self.last.samples_per_s:.0f} samples/s" if self.last is not None else ""
        hit = self.last.hit if self.last is not None else "accuracy"
        share = f" ({row.data_wait / row.seconds:.0%})" if row.seconds > 0 else ""
        plain(f"  {self.where}epoch {row.epoch}/{self.epochs} · train loss {row.train_loss:.4f} {hit} "
              f"{row.train_accuracy:.4f} · valid loss {row.valid_loss:.4f} {row.metric} {row.valid_score:.4f} · "
              f"lr {row.lr:.2e}{rate} · data wait {row.data_wait:.2f} s{share} · "
              f"elapsed {duration(time.perf_counter() - self.started)}")

    def fold_end(self, fold, result):
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        plain(f"  {self.where}best epoch {result.best_epoch} (valid {result.metric} {result.valid_score:.4f}) "
              f"→ test {result.metric} {result.scores[result.metric]:.4f}")

    def message(self, text):
        note(text)

    def advise(self, text):
        advise(text)


class TrainingProgress:
    """Training progress on stderr for the engine's callback: one line per epoch (fold, epoch k/N,
    train and valid loss and accuracy, lr, samples/s, the time steps waited for data and its share
    of the epoch, elapsed) and one per finished fold. In a terminal a live bar of the current fold
    (step, loss, accuracy, samples/s, data wait, ETA) sits below
    them and is removed when its fold ends; elsewhere (a pipe, a file, a CI log) there is no bar.
    The scores are the task's: validation and test accuracy, or mAP for a multi-label run (whose
    training hits are the share of clips whose top-scored label is one of theirs, "top-1 hit")."""

    def __enter__(self):
        self.progress = live_bar() if err.is_terminal else None
        if self.progress is not None:
            self.progress.start()
        return EpochLines(self.progress)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False


def plain(text: str) -> None:
    """One line on stderr, never wrapped: a log keeps one line per event."""
    err.print(Text(text), highlight=False, soft_wrap=True)


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ByteProgress:
    """Rich progress bars for the engine's ``progress(phase, done, total)`` byte callback (in a terminal only)."""

    def __enter__(self):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             TimeRemainingColumn(), console=err, transient=True,
                             disable=not err.is_terminal)  # a pipe or a log gets no bar fragments
        self.tasks: dict[str, int] = {}
        return self

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if not self.tasks:
            self.bars.start()  # only once there is something to show
        if phase not in self.tasks:
            self.tasks[phase] = self.bars.add_task(phase, total=total)
        self.bars.update(self.tasks[phase], completed=done, total=total)

    def __exit__(self, *exc):
        if self.tasks:
            self.bars.stop()
        return False


class ClipProgress:
    """A rich progress bar for the engine's ``progress(done, total)`` clip callback (in a terminal only)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            console=err, transient=True, disable=not err.is_terminal)
        self.task = self.bar.add_task(f"prepare {Path(self.name).name}", total=None, rate="")
        self.first: tuple[int, float] | None = None
        return self

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.bar.start()  # only once there is work to show
        self.first = self.first or (done, now)  # a resumed run starts part-way: count only new clips
        rate = (done - self.first[0]) / (now - self.first[1]) if now > self.first[1] else 0.0
        self.bar.update(self.task, completed=done, total=total, rate=f"{rate:.0f} clips/s" if rate else "")

    def __exit__(self, *exc):
        if self.first is not None:
            self.bar.stop()
        return False
