"""Training-step cost of the PETL methods on random weights and data, measured in one process.

For each method, on a backbone family (AST, Whisper's encoder, wav2vec2, HuBERT, WavLM) at
given dims: median wall time (ms) of a full training step (forward, cross-entropy, backward,
AdamW step) and of a forward pass (eval, no_grad) on random windows of ``frames`` frames
(``[batch, frames, mel bins]`` log-mels, or ``[batch, frames * 160]`` samples);
peak memory (bytes, measured: the CUDA allocator's statistics, or on the CPU the allocations
torch.profiler records); trainable parameters; analytic forward FLOPs per example. With
activation checkpointing on, every method is also measured with it (a row ``NAME
+checkpointing``), in the same rounds, and compared to itself without it.

The repetitions are interleaved round-robin (method order rotated every round), so machine
noise hits all methods alike, and ratios are taken to a reference method measured in the
same run. Optionally an outside AST's forward (transformers' ASTModel, built by the caller)
is timed alongside.

Modules: ``specs`` (method specs to configs), ``settings`` (family, dims, input shape, repetitions),
``subjects`` (what a row times: models, steps, forwards), ``timing`` (the round-robin),
``memory`` (peak memory of a step), ``results`` (rows, ratios' notes, JSON), ``run``
(``run_bench``: all of it in order).

torch loads when the measuring starts, after the method specs and settings are checked.
"""

from .memory import step_peak_memory
from .run import run_bench
from .settings import BenchSettings
from .specs import split_specs

__all__ = ["BenchSettings", "run_bench", "split_specs", "step_peak_memory"]
