"""Rich progress for the engine's callbacks: training (finetune, ablate), downloads, feature caches."""

from __future__ import annotations

import time
from pathlib import Path

from .console import err, note


def training_progress(show: bool):
    """A context giving the engine's training callback: the rich view, or (``show`` false, as on
    ranks other than 0) a silent one."""
    if show:
        return TrainingProgress()
    from contextlib import nullcontext

    from ..engine.train import Callback

    return nullcontext(Callback())


class TrainingProgress:
    """Rich live progress for the engine's callback: epoch, step, loss, accuracy, samples/s, ETA."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ..engine.train import Callback

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=err, transient=False)
        self.progress = progress

        class View(Callback):
            task = None

            def fold_start(self, fold, folds, epochs, steps):
                name = "train" if fold is None else f"fold {fold}/{folds}"
                self.task = progress.add_task(name, total=epochs * steps, stats="")

            def step(self, info):
                done = (info.epoch - 1) * info.steps + info.step
                progress.update(self.task, completed=done, stats=(
                    f"epoch {info.epoch}/{info.epochs} · loss {info.loss:.4f} · acc {info.accuracy:.3f} · "
                    f"{info.samples_per_s:.0f} samples/s · ETA {duration(info.eta_s)}"))

            def epoch_end(self, fold, record):
                progress.console.print(f"  epoch {record['epoch']}: train loss {record['train_loss']:.4f} "
                                       f"acc {record['train_accuracy']:.4f} · valid loss {record['valid_loss']:.4f} "
                                       f"acc {record['valid_accuracy']:.4f}", highlight=False)

            def fold_end(self, fold, result):
                progress.console.print(f"  best epoch {result['best_epoch']} (valid {result['valid_accuracy']:.4f}) "
                                       f"→ test accuracy {result['accuracy']:.4f}", highlight=False)

            def message(self, text):
                note(text)

        progress.start()
        return View()

    def __exit__(self, *exc):
        self.progress.stop()
        return False


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ByteProgress:
    """Rich progress bars for the engine's ``progress(phase, done, total)`` byte callback."""

    def __enter__(self):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             TimeRemainingColumn(), console=err, transient=True)
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
    """A rich progress bar for the engine's ``progress(done, total)`` clip callback."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            console=err, transient=True)
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
