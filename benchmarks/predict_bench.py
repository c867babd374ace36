"""`predict` against a bare batched forward pass over the same windows (issue 13, item 1).

    .venv/bin/python benchmarks/predict_bench.py                       # 100 one-second WAVs, AST-base, CPU
    .venv/bin/python benchmarks/predict_bench.py --device cuda --files 400

Writes ``--files`` WAVs (1 s, 16 kHz, noisy tones; ``--seconds``), builds a random AST
(AST-base by default: 768 wide, 12 blocks, 12 heads; ``--max-length`` frames, 100 = 1 s) and
then measures, after one warm-up pass of each:

(a) predict: ``Predictor.predict_files`` over the file list (decoding and featurising in
    ``--workers`` threads, windows batched ``--batch-size`` at a time across files), from the
    list of paths to the last result; model built and files listed before the clock starts;
(b) forward: the same windows, computed beforehand and held in memory, through the model in
    batches of ``--batch-size`` (the copy to the device included);
(c) one by one: every file through ``Predictor.predict`` (the old path: decode, then its own
    forward pass), for reference.

Reports the best of ``--repeats`` rounds of each, clips/s, and the ratio predict / forward.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import windows
from softmoa_cli.engine.models.ast import AST, ASTConfig
from softmoa_cli.engine.predict import Predictor


def write_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16_000)) / 16_000
    paths = []
    for k in range(count):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        paths.append(folder / f"{k:04d}.wav")
        sf.write(paths[-1], wave.astype(np.float32), 16_000, subtype="PCM_16")
    return paths


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: Predictor's)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--max-length", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-one-by-one", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the results (JSON) here")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = ASTConfig(dim=args.dim, depth=args.depth, heads=args.heads, mlp_dim=4 * args.dim,
                       max_length=args.max_length, num_classes=50)
    labels = [f"class{i}" for i in range(50)]
    predictor = Predictor(AST(config), labels, device=args.device, batch_size=args.batch_size, workers=args.workers)
    device, model = predictor.device, predictor.model
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_clips(Path(tmp), args.files, args.seconds)
        held = torch.cat([windows(load_mono_16k(p), predictor.features) for p in paths])  # [w, frames, bins] f16
        if device.type == "cuda":
            held = held.pin_memory()

        def forward() -> None:
            with torch.inference_mode():
                for start in range(0, len(held), args.batch_size):
                    x = held[start:start + args.batch_size].to(device, non_blocking=True).float()
                    model(x).float().log_softmax(-1).cpu()

        def predict() -> None:
            results = list(predictor.predict_files(paths, top_k=5))
            assert len(results) == len(paths) and not any(r.error for r in results)

        def one_by_one() -> None:
            for path in paths:
                predictor.predict(path)

        runs = {"forward": forward, "predict": predict}
        if not args.skip_one_by_one:
            runs["one_by_one"] = one_by_one
        best = {}
        for name, fn in runs.items():
            fn()  # warm-up
        for _ in range(args.repeats):  # interleaved, so drifts hit both alike
            for name, fn in runs.items():
                best[name] = min(best.get(name, float("inf")), timed(fn, device))

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "gpu": gpu, "torch": torch.__version__},
        "settings": {"files": args.files, "seconds": args.seconds, "windows": len(held), "device": str(device),
                     "batch_size": args.batch_size, "workers": predictor.workers, "dim": args.dim,
                     "depth": args.depth, "heads": args.heads, "max_length": args.max_length,
                     "repeats": args.repeats},
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "clips_per_second": {k: round(args.files / v, 2) for k, v in best.items()},
        "ratio_predict_to_forward": round(best["predict"] / best["forward"], 4),
    }
    if "one_by_one" in best:
        result["ratio_one_by_one_to_forward"] = round(best["one_by_one"] / best["forward"], 4)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
