"""Int8 dynamic quantization of the frozen Linears (engine/quantize.py) against float32 on the CPU.

    SOFTMOA_HOME=... .venv/bin/python benchmarks/quantize_bench.py --run runs/fsdd-soft --out quantize.json

``--run``: a finished FSDD run on the embedded backbone (``softmoa finetune --dataset fsdd``);
its data set must be installed and prepared under ``$SOFTMOA_HOME``. Three measurements, in one
process with ``--threads`` intra-op threads, every model in eval mode under ``inference_mode``:

1. speed, windows per second, float32 against int8, round-robin (one batch of each model in
   turn, ``--repeats`` rounds after one warm-up each; the median): (i) the run's model (the
   embedded AST, width 128, 4 blocks, with its Soft-MoA modules) on batches of ``--batch`` test
   windows of 100 frames; (ii) an AST-base-sized random AST (768 wide, 12 blocks, 12 heads, MLP
   3072) with Soft-MoA (7 experts, 1 slot, rate 128, research init) on ``--base-frames``
   frames (400 by default, not AST's 1024, to fit 2 cores) in batches of ``--base-batch``.
2. accuracy on the run's test split, float32 and int8, scored by the engine's
   ``score_indices`` (the window rule, as ``evaluate``) at ``--batch`` windows a batch, and int8
   again one window at a time (int8 activations are quantized over the whole batch, so a clip's
   scores depend slightly on its batch); with each one's top-1 agreement and largest |probability
   difference| against float32.
3. the AST-base random model on the first ``--base-clips`` test clips (features of
   ``--base-frames`` frames from their audio): top-1 agreement and largest |probability
   difference|, float32 against int8. Its weights are random, so accuracy means nothing; its
   head is drawn N(0, 1/768) so the logits spread (std about 1) and the probabilities differ.

Prints a table and writes every figure to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from softmoa_cli.engine.data.cache import clip_features, open_dataset
from softmoa_cli.engine.data.paths import data_dir
from softmoa_cli.engine.data.splits import plan_splits
from softmoa_cli.engine.devices import Precision
from softmoa_cli.engine.distributed import World
from softmoa_cli.engine.models.ast import ASTConfig
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.methods import method_config
from softmoa_cli.engine.quantize import frozen_linears, quantize_frozen
from softmoa_cli.engine.runs.run import Run
from softmoa_cli.engine.scoring.evaluation import score_indices


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished FSDD run folder on the embedded backbone")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per model pair")
    parser.add_argument("--batch", type=int, default=32, help="windows per batch on the run's model")
    parser.add_argument("--base-frames", type=int, default=400, help="frames of 10 ms per window, AST-base model")
    parser.add_argument("--base-batch", type=int, default=4, help="windows per batch, AST-base model")
    parser.add_argument("--base-clips", type=int, default=32, help="test clips scored by the AST-base model")
    parser.add_argument("--out", type=Path, help="write every figure here (JSON)")
    return parser.parse_args()


def speed(float_model, int8_model, x: torch.Tensor, repeats: int) -> dict:
    """Windows per second of each model on batch ``x``: one warm-up each, then ``repeats``
    rounds alternating them; the medians, their ratio, each round's ratio (float32 seconds over
    int8 seconds of the same round: load that changes between rounds cancels) and every round's
    seconds."""
    models = {"float32": float_model, "int8": int8_model}
    seconds = {name: [] for name in models}
    for model in models.values():
        model(x)
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(x)
            seconds[name].append(time.perf_counter() - start)
    rate = {name: len(x) / statistics.median(times) for name, times in seconds.items()}
    paired = [f / q for f, q in zip(seconds["float32"], seconds["int8"])]
    return {"batch": list(x.shape), "windows_per_s": rate, "speedup": rate["int8"] / rate["float32"],
            "speedup_rounds": paired, "seconds": seconds}


def agreement(probabilities: torch.Tensor, reference: torch.Tensor) -> dict:
    """Top-1 agreement and largest |probability difference| of ``[n, classes]`` against ``reference``."""
    return {"top1_agreement": (probabilities.argmax(1) == reference.argmax(1)).double().mean().item(),
            "max_abs_prob_diff": (probabilities - reference).abs().max().item()}


def run_accuracy(run: Run, table, test: np.ndarray, batch: int) -> tuple[dict, object, object]:
    """Float32, int8 and int8-one-window-at-a-time scores of the run's test clips; the two models."""
    world = World(device=torch.device("cpu"))
    precision = Precision("fp32", world.device)
    float_model = run.classifier().model
    int8_model = run.classifier().quantized().model
    scored = {"float32": score_indices(float_model, table, test, batch, world, precision),
              "int8": score_indices(int8_model, table, test, batch, world, precision),
              "int8, 1 window a batch": score_indices(int8_model, table, test, 1, world, precision)}
    reference = scored["float32"].probabilities
    results = {name: {key: evaluation.metrics()[key] for key in ("accuracy", "macro_f1")}
               | agreement(evaluation.probabilities, reference) for name, evaluation in scored.items()}
    results["int8, 1 window a batch"]["against int8 batched"] = agreement(
        scored["int8, 1 window a batch"].probabilities, scored["int8"].probabilities)
    return results, float_model, int8_model


def base_models(frames: int, classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The AST-base-sized random model with Soft-MoA, float32 and int8."""
    torch.manual_seed(0)
    model = build_model(ASTConfig(max_length=frames, num_classes=classes), method_config("soft", init="research"),
                        classes).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, model.config.dim ** -0.5)
    return model, quantize_frozen(copy.deepcopy(model))


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []
    return names[0] if names else platform.machine()


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    run = Run.open(args.run)
    data = run.data()
    table = open_dataset(data)
    test = plan_splits(table, data)[0].test
    started = time.perf_counter()
    report = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "threads": args.threads,
              "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
              "quantized_engine": torch.backends.quantized.engine, "run": str(args.run), "test_clips": len(test)}

    with torch.inference_mode():
        report["accuracy"], float_model, int8_model = run_accuracy(run, table, test, args.batch)
        report["frozen_linears"] = {"embedded": len(frozen_linears(float_model))}
        windows, _ = next(table.window_batches(test, args.batch))
        report["speed"] = {"embedded": speed(float_model, int8_model, windows, args.repeats)}

        float_base, int8_base = base_models(args.base_frames, len(table.label_names))
        report["frozen_linears"]["ast_base"] = len(frozen_linears(float_base))
        features = dataclasses.replace(table.feature_config, max_length=args.base_frames)
        clips = torch.from_numpy(np.stack([clip_features(data_dir(data.dataset) / table.paths[i], features)[0]
                                           for i in test[:args.base_clips]])).float()
        report["speed"]["ast_base"] = speed(float_base, int8_base, clips[:args.base_batch], args.repeats)
        probabilities = {name: torch.cat([model(part).softmax(1) for part in clips.split(args.base_batch)])
                         for name, model in (("float32", float_base), ("int8", int8_base))}
        report["ast_base_agreement"] = agreement(probabilities["int8"], probabilities["float32"]) | {
            "clips": len(clips), "frames": args.base_frames, "batch": args.base_batch}
    report["load_average_at_end"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - started
    show(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


def show(report: dict) -> None:
    print(f"{report['machine']}, torch {report['torch']} ({report['quantized_engine']}), {report['threads']} threads, "
          f"load average {' / '.join(f'{x:.1f}' for x in report['load_average_at_end'])} at the end, "
          f"{report['seconds']:.0f} s\n")
    print("| model | batch | float32 windows/s | int8 windows/s | speed-up | speed-up of each round |")
    print("|---|---|---:|---:|---:|---|")
    for name, row in report["speed"].items():
        print(f"| {name} | {' x '.join(map(str, row['batch']))} | {row['windows_per_s']['float32']:.2f} | "
              f"{row['windows_per_s']['int8']:.2f} | {row['speedup']:.2f} | "
              f"{', '.join(f'{r:.2f}' for r in row['speedup_rounds'])} |")
    print(f"\nFSDD test ({report['test_clips']} clips), the run's model:\n")
    print("| scored | accuracy | macro-F1 | top-1 agreement with float32 | max abs prob diff |")
    print("|---|---:|---:|---:|---:|")
    for name, row in report["accuracy"].items():
        print(f"| {name} | {row['accuracy']:.4f} | {row['macro_f1']:.4f} | {row['top1_agreement']:.4f} | "
              f"{row['max_abs_prob_diff']:.2e} |")
    base = report["ast_base_agreement"]
    print(f"\nAST-base random ({base['clips']} FSDD test clips, {base['frames']} frames): top-1 agreement "
          f"{base['top1_agreement']:.4f}, max abs prob diff {base['max_abs_prob_diff']:.2e}")


if __name__ == "__main__":
    main()
