"""Wall time of the subjects' steps and forwards, round-robin: every round runs each subject
once, in an order rotated by one each round, so that machine noise hits all of them alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .settings import BenchSettings
    from .subjects import Subject

Progress = Callable[[int, int, str], None]
"""``progress(done, total, text)``: ``done`` of ``total`` timed rounds, and what happens now."""


def time_ms(function: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``function``, the device's queued work included."""
    from ..devices import synchronize

    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def time_rounds(subjects: list[Subject], settings: BenchSettings, device: torch.device, report: Progress) -> None:
    """Warm-up rounds, then timed ones (their samples appended to each subject); each round runs
    every subject's step and forward once."""
    for round_ in range(settings.warmup + settings.repeats):
        timed = round_ >= settings.warmup
        done = max(0, round_ - settings.warmup)
        stage = f"round {done + 1}/{settings.repeats}" if timed else f"warm-up {round_ + 1}/{settings.warmup}"
        shift = round_ % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:  # rotate so no method always goes first
            report(done, settings.repeats, f"{stage}: {subject.label}")
            if subject.step is not None:
                elapsed = time_ms(subject.step, device)
                if timed:
                    subject.step_samples.append(elapsed)
            elapsed = time_ms(subject.forward, device)
            if timed:
                subject.forward_samples.append(elapsed)
