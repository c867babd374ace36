"""Lag of live audio through ``softmoa predict --stream -``: from a window's last sample to its line.

    .venv/bin/python benchmarks/stream_bench.py                    # trains a 1-epoch FSDD run first (minutes)
    .venv/bin/python benchmarks/stream_bench.py --run runs/fsdd-soft-... --seconds 120 --threads 1

Without ``--run`` it trains one in a temporary SOFTMOA_HOME (``softmoa download fsdd --from
FSDD``, then ``softmoa finetune --dataset fsdd --preset fsdd-cpu --epochs 1``: the embedded
backbone, 1 s windows). It builds a recording of ``--seconds`` from FSDD clips one after
another (16 kHz, 16-bit), starts ``softmoa predict --stream - --run RUN`` (``--window`` and
``--hop``: the model's defaults unless given; ``--threads``: torch's threads), waits for the
model to load (its ``model:`` line), then writes the PCM to its standard input at real-time
pace, ``--chunk-ms`` at a time, each chunk once its last sample would have been recorded. A
window's lag: from the write of the chunk holding its last sample to the moment its JSON line
is read. The last window (padded, given at the end of input) is left out. It keeps up with
real time when the lags stay under the hop (95th percentile) and do not grow (the median of
the last quarter of the windows within half a hop of that of the first). Everything runs under
``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from softmoa_cli.engine.data.audio import load_mono_16k

REPO = Path(__file__).resolve().parents[1]
SOFTMOA = [sys.executable, "-c", "from softmoa_cli.cli.app import main; main()"]
RATE, SHIFT, FRAME = 16_000, 160, 400  # samples: rate, per 10 ms frame, per 25 ms frame


def train_run(home: Path, fsdd: Path, timeout: float) -> Path:
    """A 1-epoch FSDD run on the embedded backbone, in ``home``: its folder."""
    env = os.environ | {"SOFTMOA_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    steps = [["download", "fsdd", "--from", str(fsdd)],
             ["finetune", "--dataset", "fsdd", "--preset", "fsdd-cpu", "--epochs", "1", "--out", str(home / "run")]]
    for args in steps:
        subprocess.run(SOFTMOA + args, env=env, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
    return home / "run"


def recording(fsdd: Path, seconds: float) -> bytes:
    """FSDD clips one after another (sorted by name, resampled to 16 kHz) up to ``seconds``: s16le PCM."""
    pieces, total = [], 0
    for path in sorted((fsdd / "recordings").glob("*.wav")):
        pieces.append(load_mono_16k(path).numpy())
        total += len(pieces[-1])
        if total >= seconds * RATE:
            break
    wave = np.concatenate(pieces)[:int(seconds * RATE)]
    return (np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2")).tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finetune run (default: train a 1-epoch FSDD run first)")
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared" / "data" / "fsdd",
                        help="the FSDD folder (holding recordings/)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio streamed")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="audio per write, milliseconds")
    parser.add_argument("--window", type=float, help="seconds (default: the model's)")
    parser.add_argument("--hop", type=float, help="seconds (default: half the window)")
    parser.add_argument("--threads", type=int, help="predict --threads (default: torch's, the cores)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for everything, training included")
    parser.add_argument("--out", type=Path, help="also write the results (JSON) here")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train_run(Path(tmp), args.fsdd, args.timeout)
        pcm = recording(args.fsdd, args.seconds)
        flags = [f for name in ("window", "hop", "threads") if getattr(args, name)
                 for f in (f"--{name}", str(getattr(args, name)))]
        command = SOFTMOA + ["predict", "--stream", "-", "--run", str(run), *flags]
        env = os.environ | {"PYTHONPATH": str(REPO), "COLUMNS": "200"}
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=env)
        timer = threading.Timer(max(1.0, deadline - time.monotonic()), process.kill)
        timer.start()
        try:
            model = next((line.decode().strip() for line in process.stderr if line.startswith(b"model:")), None)
            if model is None:
                raise SystemExit(f"predict --stream did not start: {' '.join(command)}")
            chunk = int(args.chunk_ms / 1000 * RATE) * 2  # bytes
            written: list[float] = []  # when each chunk went in

            def feed() -> None:
                start = time.perf_counter()
                for k, at in enumerate(range(0, len(pcm), chunk)):
                    time.sleep(max(0.0, start + (at + chunk) / 2 / RATE - time.perf_counter()))
                    process.stdin.write(pcm[at:at + chunk])
                    process.stdin.flush()
                    written.append(time.perf_counter())
                process.stdin.close()

            feeder = threading.Thread(target=feed)
            load = os.getloadavg()
            feeder.start()
            lines = [(time.perf_counter(), json.loads(line)) for line in process.stdout]
            feeder.join()
            process.wait()
        finally:
            timer.cancel()
            process.kill()
        if process.returncode != 0:
            raise SystemExit(f"predict --stream failed (exit {process.returncode})")

    first, second = lines[0][1], lines[1][1]
    width, hop = round((first["end"] - first["start"]) * 100), round((second["start"] - first["start"]) * 100)
    hop_ms = hop * 10
    lags = []
    for seen, window in lines[:-1]:  # the last one: padded, at the end of input
        last_sample = SHIFT * (round(window["start"] * 100) + width - 1) + FRAME - 1
        lags.append(seen - written[2 * last_sample // chunk])
    lags = np.array(lags) * 1000
    quarter = max(1, len(lags) // 4)
    early, late = float(np.median(lags[:quarter])), float(np.median(lags[-quarter:]))
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": args.threads or f"torch's default ({os.cpu_count()}, the cores)",
                    "load_average_at_start": [round(x, 2) for x in load]},
        "settings": {"model": model, "seconds": args.seconds, "chunk_ms": args.chunk_ms, "window_s": width / 100,
                     "hop_s": hop / 100, "windows": len(lags)},
        "lag_ms": {"p50": round(float(np.percentile(lags, 50)), 1), "p95": round(float(np.percentile(lags, 95)), 1),
                   "max": round(float(lags.max()), 1), "first_window": round(float(lags[0]), 1),
                   "median_first_quarter": round(early, 1), "median_last_quarter": round(late, 1)},
        "keeps_up": bool(np.percentile(lags, 95) < hop_ms and late < early + hop_ms / 2),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
