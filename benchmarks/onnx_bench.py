"""CPU latency of the ONNX export under onnxruntime against the torch model it came from (issue 14, item 5).

    .venv/bin/python benchmarks/onnx_bench.py                     # AST-base, 1024 frames, Soft-MoA; batches 1 and 32
    .venv/bin/python benchmarks/onnx_bench.py --batches 1,8 --repeats 5 --threads 4

Builds a randomly initialised AST (AST-base by default: 768 wide, 12 blocks, 12 heads, MLP
3072, ``--frames`` 1024, 128 mel bins) with a PETL method (``--method``, default Soft-MoA with
7 experts, 1 slot, reduction rate 128, both projections N(0, 0.02) so the experts contribute),
exports it with the same call as ``softmoa export --format onnx`` (``export/onnx.py``; in a
child process, so the exporter's global state never touches the timed process) and times one forward pass of a batch of ``[b, frames, mel_bins]`` features for each of
``--batches``: torch (``inference_mode``, fp32) and onnxruntime (CPU provider), both with
``--threads`` intra-op threads. One warm-up pass of each at batch 1, then ``--repeats`` rounds
that alternate torch and onnxruntime, so load on a shared machine falls on both alike; the
median of each is reported, with the ratio torch / onnxruntime measured in the same run and
the largest |logit difference| between the two on the timed inputs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from softmoa_cli.engine.export.merge import merge_lora
from softmoa_cli.engine.export.onnx import export_graph, graph_runner
from softmoa_cli.engine.models.ast import ASTConfig
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.methods import method_config


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--frames", type=int, default=1024, help="max_length of the model's input (10 ms frames)")
    parser.add_argument("--mel-bins", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--method", default="soft", help="a PETL method name (its defaults; research init)")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads of both runtimes")
    return parser.parse_args()


def timed(function, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Seconds of one call of ``function(x)`` and its output."""
    start = time.perf_counter()
    out = function(x)
    return time.perf_counter() - start, out


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ASTConfig(dim=args.dim, depth=args.depth, heads=args.heads, mlp_dim=4 * args.dim,
                       max_length=args.frames, num_mel_bins=args.mel_bins)
    options = {"init": "research"} if args.method in ("adapter", "dense", "soft") else {}
    model = build_model(config, method_config(args.method, **options), args.classes).eval()
    exported = build_model(config, method_config(args.method, **options), args.classes).eval()
    exported.load_state_dict(model.state_dict())
    merge_lora(exported)
    batches = [int(b) for b in args.batches.split(",")]
    generator = torch.Generator().manual_seed(1)
    inputs = {b: 0.5 * torch.randn(b, args.frames, args.mel_bins, generator=generator) for b in batches}

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        start = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            child.submit(export_graph, exported, path).result()  # torch.export's state stays out of the timing
        export_seconds = time.perf_counter() - start
        size = path.stat().st_size
        onnx = graph_runner(path, args.threads)

        def in_torch(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(x)

        warm = torch.zeros(1, args.frames, args.mel_bins)
        in_torch(warm), onnx(warm)
        rows = []
        for b in batches:
            times = {"torch": [], "onnxruntime": []}
            difference = 0.0
            for _ in range(args.repeats):
                seconds, reference = timed(in_torch, inputs[b])
                times["torch"].append(seconds)
                seconds, logits = timed(onnx, inputs[b])
                times["onnxruntime"].append(seconds)
                difference = max(difference, float((logits - reference).abs().max()))
            t, o = statistics.median(times["torch"]), statistics.median(times["onnxruntime"])
            rows.append((b, t, o, difference))
            print(f"batch {b}: torch {t:.3f} s, onnxruntime {o:.3f} s (rounds: torch "
                  f"{', '.join(f'{s:.3f}' for s in times['torch'])}; onnxruntime "
                  f"{', '.join(f'{s:.3f}' for s in times['onnxruntime'])})", flush=True)

    load = os.getloadavg()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}, {args.threads} intra-op threads each")
    print(f"model: AST d {args.dim}, depth {args.depth}, {args.heads} heads, {args.frames} frames x {args.mel_bins} "
          f"mel bins, {config.num_tokens} tokens, {args.classes} classes, method {args.method}; export "
          f"{export_seconds:.1f} s, model.onnx {size / 2**20:.1f} MiB; median of {args.repeats} alternating rounds\n")
    print("| batch | torch (s) | onnxruntime (s) | torch ms / clip | onnxruntime ms / clip | torch / onnxruntime "
          "| max abs logit difference |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for b, t, o, difference in rows:
        print(f"| {b} | {t:.3f} | {o:.3f} | {1000 * t / b:.0f} | {1000 * o / b:.0f} | {t / o:.2f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
