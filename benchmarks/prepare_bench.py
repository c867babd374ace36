"""Throughput of `prepare` and the cost of reading a training batch from the feature cache.

    .venv/bin/python benchmarks/prepare_bench.py                     # FSDD + 600 one-second clips, --workers 1 and 2
    .venv/bin/python benchmarks/prepare_bench.py --clips 2000 --workers 1 2 4

Prepare: wall time of ``prepare_cache`` from scratch (fresh cache, worker start-up included),
as clips/s and times real-time (seconds of audio per second). Batch: median time to read 32
random clips from a cache of 2,000 (float16 memory map, warm page cache) into float32, for
100, 500 and 1024 frames, against the median forward pass of an AST-base (768-d, 12 blocks)
on that batch (a lower bound of any training step). Prints a markdown report.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from softmoa_cli.engine.data.cache_build import prepare_cache
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.data.table import FeatureTable

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"


def one_second_clips(folder: Path, count: int) -> Path:
    """``count`` 1 s, 16 kHz, 16-bit clips of noisy tones in 10 class folders."""
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    for k in range(count):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"class{k % 10}" / f"{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wave, 16_000, subtype="PCM_16")
    return folder


def audio_seconds(files: list[Path]) -> float:
    return sum(info.frames / info.samplerate for info in map(sf.info, map(str, files)))


def time_prepare(name: str, source: Path, workers: int, max_length: int, fsdd: bool) -> dict:
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        if fsdd:
            cache, _ = prepare_cache("fsdd", data=source, home=Path(home), workers=workers)
        else:
            cache, _ = prepare_cache(source, max_length=max_length, home=Path(home), workers=workers)
        seconds = time.perf_counter() - started
    files = sorted(source.rglob("*.wav"))
    return {"data": name, "workers": workers, "clips": len(cache), "seconds": seconds, "clips_per_s": len(cache) / seconds,
            "realtime": audio_seconds(files) / seconds}


def time_batch(frames: int, batch: int = 32, clips: int = 2000, repeats: int = 30) -> float:
    """Median seconds to read a random batch from a float16 memory map of ``clips`` clips."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features.f16"
        rows = np.memmap(path, dtype=np.float16, mode="w+", shape=(clips, frames, 128))
        rows[:] = np.random.default_rng(0).standard_normal((clips, frames, 128), dtype=np.float32)
        rows.flush()
        table = FeatureTable("bench", np.memmap(path, dtype=np.float16, mode="r", shape=rows.shape),
                             np.zeros(clips, np.int64), ["x"], np.full(clips, "train"), np.zeros(clips, np.int64),
                             FeatureConfig(max_length=frames))
        rng, times = np.random.default_rng(1), []
        for _ in range(repeats):
            chosen = rng.choice(clips, batch, replace=False)
            started = time.perf_counter()
            table.batch(chosen)
            times.append(time.perf_counter() - started)
        return statistics.median(times)


def time_forward(frames: int, batch: int = 32, repeats: int = 1) -> float:
    """Median seconds of an AST-base forward pass on ``[batch, frames, 128]`` (no gradients)."""
    from softmoa_cli.engine.models.ast import AST, ASTConfig

    model = AST(ASTConfig(max_length=frames)).eval()
    x = torch.randn(batch, frames, 128)
    times = []
    with torch.inference_mode():
        model(x[:2])
        for _ in range(repeats):
            started = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=600, help="generated one-second clips")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fsdd", type=Path, default=FSDD)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 500, 1024], help="batch read lengths")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch "
          f"{torch.__version__}, load average before: {os.getloadavg()[0]:.1f}\n")
    print("| data | workers | clips | seconds | clips/s | x real-time |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        generated = one_second_clips(Path(folder) / "onesec", args.clips)
        for workers in args.workers:
            for name, source, fsdd in (("FSDD (8 kHz, 0.14-2.3 s)", args.fsdd, True),
                                       ("1 s clips, 16 kHz", generated, False)):
                r = time_prepare(name, source, workers, 100, fsdd)
                print(f"| {r['data']} | {r['workers']} | {r['clips']} | {r['seconds']:.1f} | {r['clips_per_s']:.0f} | "
                      f"{r['realtime']:.0f} |", flush=True)
    print(f"\nload average after prepare: {os.getloadavg()[0]:.1f}\n")
    print("| frames | batch read (32 clips) | AST-base forward (32 clips) | read / forward |\n|---|---|---|---|")
    for frames in args.frames:
        read, forward = time_batch(frames), time_forward(frames)
        print(f"| {frames} | {read * 1e3:.2f} ms | {forward:.2f} s | {100 * read / forward:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
