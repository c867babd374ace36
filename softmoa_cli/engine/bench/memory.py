"""Peak memory of a training step, in bytes: on CUDA from the allocator's statistics, on the CPU
from the allocations and frees torch.profiler records; plus what persists across steps (the
parameters and the optimiser's state)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .subjects import Subject, training_subject

if TYPE_CHECKING:
    import torch

CPU_MEMORY = ("torch.profiler's CPU allocator events (profile_memory) during one training step: the peak of tensor "
              "memory allocated above what was allocated before it, plus the method's parameters and AdamW state")
CUDA_MEMORY = ("torch.cuda.max_memory_allocated during one training step, minus what was allocated before it, "
               "plus the method's parameters and AdamW state")


def step_peak_memory(model: torch.nn.Module, batch_size: int, window: tuple[int, ...],
                     device: str | torch.device = "cpu") -> int:
    """Peak bytes of one training step of ``model`` on a random ``[batch_size, *window]`` batch
    (``window``: ``FeatureConfig.window_shape``), measured as the benchmark rows are
    (``CPU_MEMORY`` / ``CUDA_MEMORY``). The step updates the model's trainable weights."""
    import torch

    device = torch.device(device)
    x = torch.randn(batch_size, *window, device=device)
    y = torch.randint(model.head.fc.out_features, (batch_size,), device=device)
    subject = training_subject("step", model.to(device), x, y)
    return step_bytes(subject, device) + persistent_bytes(subject)


def step_bytes(subject: Subject, device: torch.device) -> int:
    """The step's own peak memory, measured as ``CPU_MEMORY`` / ``CUDA_MEMORY`` say."""
    return _cuda_step_bytes(subject, device) if device.type == "cuda" else cpu_step_bytes(subject)


def persistent_bytes(subject: Subject) -> int:
    """Bytes of the model's parameters and the optimiser's state (distinct storages)."""
    import torch

    params = list(subject.model.parameters())
    state = [v for s in subject.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return _storage_bytes(params + state)


def peak_of(changes: list[tuple[int, int]]) -> int:
    """Highest running total of ``(time_ns, bytes)`` allocations (frees negative), in time order, from 0."""
    live = peak = 0
    for _, nbytes in sorted(changes, key=lambda change: change[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


def cpu_step_bytes(subject: Subject) -> int:
    """Peak bytes of CPU tensor memory during one training step above what was allocated before
    it, from the allocations and frees torch.profiler records (the gradients are freed first, so
    they count)."""
    from torch.profiler import ProfilerActivity, profile

    subject.optimizer.zero_grad(set_to_none=True)
    profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        profiler.start()
    try:
        subject.step()
    finally:
        with _quiet_stderr():
            profiler.stop()
    events = profiler.profiler.kineto_results.events()
    return peak_of([(event.start_ns(), event.nbytes()) for event in events
                    if event.name() == "[memory]" and event.device_type().name == "CPU"])


def _cuda_step_bytes(subject: Subject, device: torch.device) -> int:
    """Peak bytes of CUDA memory during one training step above what was allocated before it."""
    import torch

    from ..devices import synchronize

    synchronize(device)
    subject.optimizer.zero_grad(set_to_none=True)  # so the step's gradients count in its peak
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    subject.step()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (each counted once, by data pointer)."""
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.nbytes() and storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null inside (torch.profiler's C++ start and stop lines), restored after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
