"""The share of a training step spent waiting for data, with the batches read in the training
process (--workers 0) and by worker processes (--workers 2).

    .venv/bin/python benchmarks/data_wait_bench.py                       # fsdd-cpu and the esc50-shaped set
    .venv/bin/python benchmarks/data_wait_bench.py --steps 20 --workers 0 2 4

Two data sets: FSDD (../shared/data/fsdd, the fsdd-cpu preset: 100 frames, batch 32) and a
stand-in of ESC-50's shape (ESC-50 itself is not on the machine): 5 s clips of noisy tones,
50 classes, 8 clips each, read at 512 frames, batch 32, with the esc50 preset's SpecAugment.
Both train the fsdd-cpu preset's Soft-MoA (7 experts) on a random AST of that preset's
``random`` dims (d 192, depth 4; an AST-base step costs some 15x more, so its share is
smaller). The data sets are prepared first (not timed). For each run: the steps after the
first (which includes the workers' start) up to ``--steps``, their summed data wait over
their wall time. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from softmoa_cli.engine.config import build_config, read_preset
from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.train import Callback, finetune

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "data" / "fsdd"


class Enough(Exception):
    """Raised by ``Clock`` once it has timed its steps: the rest of the run is not needed."""


class Clock(Callback):
    """Wall time and cumulative data wait at the end of each step; stops the run after ``steps``."""

    def __init__(self, steps: int):
        self.steps, self.marks = steps, []

    def step(self, info):
        self.marks.append((time.perf_counter(), info.data_wait_s))
        if len(self.marks) == self.steps:
            raise Enough

    @property
    def per_step(self) -> tuple[float, float]:
        """(wall time, data wait) per step, seconds, over the steps after the first."""
        (t0, w0), (t1, w1) = self.marks[0], self.marks[-1]
        return (t1 - t0) / (len(self.marks) - 1), (w1 - w0) / (len(self.marks) - 1)


def esc50_shaped(folder: Path, classes: int = 50, per_class: int = 8, seconds: float = 5.0) -> Path:
    """``classes`` folders of ``per_class`` 5 s, 16 kHz noisy tones (ESC-50's clip length and classes)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16_000)) / 16_000
    for c in range(classes):
        for k in range(per_class):
            wave = 0.3 * np.sin(2 * np.pi * (100 + 40 * c) * t) + 0.05 * rng.standard_normal(t.size)
            path = folder / f"class{c:02d}" / f"{k}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), wave, 16_000, subtype="PCM_16")
    return folder


def measure(table, data: dict, workers: int, steps: int, threads: int) -> tuple[float, float]:
    """(seconds, data wait) per step of a run of the fsdd-cpu preset's model on ``table``."""
    raw = read_preset(ROOT / "presets" / "fsdd-cpu.yaml")
    raw["data"] = data
    config = build_config(raw, {"model.checkpoint": "random", "training.workers": workers,
                                "training.device": "cpu", "training.threads": threads})
    clock = Clock(steps)
    with tempfile.TemporaryDirectory() as run:
        try:
            finetune(config, Path(run) / "run", clock, table)
        except Enough:
            pass
    return clock.per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        fsdd, _ = prepare_cache("fsdd", data=FSDD, home=Path(home), workers=2)
        esc, _ = prepare_cache(esc50_shaped(Path(home) / "esc50-shaped"), max_length=512, home=Path(home), workers=2)
        sets = [("fsdd (fsdd-cpu: 100 frames, batch 32)", fsdd, {"dataset": "fsdd", "max_length": 100}),
                ("esc50-shaped (5 s, 512 frames, 50 classes, batch 32, SpecAugment)", esc,
                 {"dataset": "esc50-shaped", "max_length": 512, "spec_augment": {"freq_mask": 24, "time_mask": 80}})]
        for name, table, data in sets:
            for workers in args.workers:
                step, wait = measure(table, data, workers, args.steps, args.threads)
                rows.append(f"| {name} | {workers} | {step:.2f} | {1000 * wait:.1f} | {100 * wait / step:.2f}% |")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print("| data | --workers | seconds / step | data wait, ms / step | data wait / step time |\n"
          "|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
