"""Resident memory of one training step with and without activation checkpointing, each in a
fresh process: the cross-check of ``softmoa bench --activation-checkpointing``'s CPU figures
(which count tensor allocations) against what the operating system sees.

    .venv/bin/python benchmarks/checkpointing_rss.py                 # Soft-MoA, AST-base, 1024 frames, batch 4

Per setting, a child process builds the model (random weights), runs one warm-up step (AdamW
state, kernel set-up), hands freed heap pages back (``malloc_trim``), resets the peak RSS
(``/proc/self/clear_refs``), runs one step and reports the peak RSS (VmHWM) minus the RSS
before the step: tensors plus whatever else the step holds (allocator fragmentation, library
buffers). Linux with glibc only.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys

MiB = 2**20


def status_bytes(key: str) -> int:
    """A ``/proc/self/status`` figure (``VmRSS:``, ``VmHWM:``) in bytes."""
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith(key)).split()[1]) * 1024


def measure_step(method: str, frames: int, batch: int, threads: int, checkpointing: bool) -> tuple[int, int]:
    """(RSS before the step, the step's peak RSS above it), bytes, in this process."""
    import torch
    import torch.nn.functional as F

    from softmoa_cli.engine.models.ast import ASTConfig
    from softmoa_cli.engine.models.backbone import set_activation_checkpointing
    from softmoa_cli.engine.petl.build import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(ASTConfig(max_length=frames, num_classes=10), method, 10).train()
    set_activation_checkpointing(model, checkpointing)
    x, y = torch.randn(batch, frames, 128), torch.randint(10, (batch,))  # [b, frames, mel bins], [b]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()
    optimizer.zero_grad(set_to_none=True)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # the peak RSS starts again from the current RSS
    before = status_bytes("VmRSS:")
    step()
    return before, status_bytes("VmHWM:") - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="soft")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = [args.method, args.frames, args.batch, args.threads]
    if args.child:
        print(*measure_step(*settings, args.child == "on"))
        return
    growth = {}
    for mode in ("off", "on"):
        command = [sys.executable, __file__, "--child", mode, "--method", args.method, "--frames", str(args.frames),
                   "--batch", str(args.batch), "--threads", str(args.threads)]
        before, growth[mode] = map(int, subprocess.run(command, check=True, capture_output=True, text=True).stdout.split())
        print(f"checkpointing {mode}: RSS before the step {before / MiB:.0f} MiB, step's peak above it "
              f"{growth[mode] / MiB:.0f} MiB")
    print(f"{args.method}, {args.frames} frames, batch {args.batch}: the step's peak RSS with checkpointing = "
          f"{growth['on'] / growth['off']:.3f}x without")


if __name__ == "__main__":
    main()
