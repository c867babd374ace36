"""Training-step cost of the PETL methods on random weights and data, measured in one process.

For each method: median wall time (ms) of a full training step (forward, cross-entropy,
backward, AdamW step) and of a forward pass (eval, no_grad) on ``[batch, frames, 128]``;
peak memory (bytes, measured: the CUDA allocator's statistics, or on the CPU the allocations
torch.profiler records); trainable parameters; analytic forward FLOPs per example. With
activation checkpointing on, every method is also measured with it (a row ``NAME
+checkpointing``), in the same rounds, and compared to itself without it.

The repetitions are interleaved round-robin (method order rotated every round), so machine
noise hits all methods alike, and ratios are taken to a reference method measured in the
same run. Optionally an outside AST's forward (transformers' ASTModel, built by the caller)
is timed alongside.

torch loads when the measuring starts, after the method specs and settings are checked.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .errors import SoftmoaError
from .petl.methods import MethodConfig, method_config

if TYPE_CHECKING:
    import torch

    from .models.ast import ASTConfig

Progress = Callable[[int, int, str], None]
"""``progress(done, total, text)``: ``done`` of ``total`` timed rounds, and what happens now."""

TRANSFORMERS = "transformers"
"""Label of the row timing transformers' ASTModel forward."""

CPU_MEMORY = ("torch.profiler's CPU allocator events (profile_memory) during one training step: the peak of tensor "
              "memory allocated above what was allocated before it, plus the method's parameters and AdamW state")
CUDA_MEMORY = ("torch.cuda.max_memory_allocated during one training step, minus what was allocated before it, "
               "plus the method's parameters and AdamW state")
CHECKPOINTED = " +checkpointing"
"""Suffix of the label of a method's row with activation checkpointing."""


@dataclass(frozen=True)
class BenchSettings:
    """Backbone dims, input shape and repetitions. ``threads``: torch intra-op threads
    (None: leave as is). ``activation_checkpointing``: also measure every method with it."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    frames: int = 400
    batch: int = 4
    warmup: int = 1
    repeats: int = 5
    threads: int | None = None
    num_classes: int = 10
    device: str = "cpu"
    seed: int = 0
    activation_checkpointing: bool = False

    def check(self) -> None:
        """Raise SoftmoaError for settings that cannot run."""
        positive = {"dim": self.dim, "depth": self.depth, "heads": self.heads, "mlp_dim": self.mlp_dim,
                    "batch": self.batch, "repeats": self.repeats, "num_classes": self.num_classes}
        for name, value in positive.items():
            if value < 1:
                raise SoftmoaError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.warmup < 0 or (self.threads is not None and self.threads < 1):
            raise SoftmoaError("--warmup must be at least 0 and --threads at least 1")
        if self.dim % self.heads:
            raise SoftmoaError(f"--dim {self.dim} is not divisible by --heads {self.heads}")
        if self.frames < 16:
            raise SoftmoaError(f"--frames must be at least 16 (one patch), not {self.frames}")

    def ast_config(self) -> ASTConfig:
        from .models.ast import ASTConfig

        return ASTConfig(dim=self.dim, depth=self.depth, heads=self.heads, mlp_dim=self.mlp_dim,
                         max_length=self.frames, num_classes=self.num_classes)


@dataclass
class MethodBench:
    """One row: times in ms (medians and every timed sample), memory in bytes, FLOPs per example.

    ``peak_bytes``: the step's peak (``step_bytes``) plus the parameters and AdamW state.
    ``step_bytes``: the peak of the training step above what was allocated before it
    (activations, gradients, buffers of the passes). A row with ``activation_checkpointing``
    has its ratios to the same method without it (``*_to_plain``); its step-time ratio is the
    median of the per-round ratios (a round times both back to back, so load that changes
    between rounds cancels).
    """

    label: str
    method: dict  # the validated method config; {} for the transformers row
    step_ms: float | None  # None for the transformers row (forward only)
    forward_ms: float
    peak_bytes: int | None
    trainable_params: int | None
    total_params: int
    flops: int | None  # analytic forward FLOPs per example (accounting.cost)
    step_samples_ms: list[float] = field(default_factory=list)
    forward_samples_ms: list[float] = field(default_factory=list)
    step_ratio: float | None = None  # step_ms / the reference's step_ms
    forward_ratio: float | None = None
    peak_ratio: float | None = None
    step_bytes: int | None = None
    activation_checkpointing: bool = False
    step_ratio_to_plain: float | None = None
    peak_ratio_to_plain: float | None = None
    step_bytes_ratio_to_plain: float | None = None

    @property
    def step_over_forward(self) -> float | None:
        return None if self.step_ms is None else self.step_ms / self.forward_ms

    def to_dict(self) -> dict:
        return asdict(self) | {"step_over_forward": self.step_over_forward}


@dataclass
class BenchResult:
    settings: BenchSettings
    environment: dict
    reference: str
    memory_measure: str
    rows: list[MethodBench]

    def row(self, label: str) -> MethodBench:
        return next(row for row in self.rows if row.label == label)

    @property
    def engine_over_transformers(self) -> float | None:
        """Forward time of the bare engine AST (the ``linear`` row) / transformers' ASTModel."""
        labels = [row.label for row in self.rows]
        if TRANSFORMERS not in labels or "linear" not in labels:
            return None
        return self.row("linear").forward_ms / self.row(TRANSFORMERS).forward_ms

    def notes(self) -> list[str]:
        """What to keep in mind reading the rows: the head the parameter counts include, and
        that a single timed round is no measurement."""
        classes = self.settings.num_classes
        notes = [f"trainable parameters and FLOPs include a {classes}-class head (--classes {classes})"]
        if self.settings.repeats == 1:
            notes.append("warning: one timed round (--repeats 1) is a single sample per method, within the machine's "
                         "noise; use --repeats 5 or more to compare methods")
        for row in self.rows:
            if row.activation_checkpointing:
                notes.append(f"activation checkpointing, {row.label.removesuffix(CHECKPOINTED)}: step time "
                             f"{row.step_ratio_to_plain:.3f}x, peak memory {row.peak_ratio_to_plain:.3f}x, the step's "
                             f"own memory (activations, gradients, buffers) {row.step_bytes_ratio_to_plain:.3f}x the "
                             f"method without it")
        return notes

    def to_dict(self) -> dict:
        return {"settings": asdict(self.settings), "environment": self.environment, "reference": self.reference,
                "memory_measure": self.memory_measure, "engine_over_transformers_forward": self.engine_over_transformers,
                "methods": [row.to_dict() for row in self.rows]}


def split_specs(text: str) -> list[str]:
    """``"linear,soft:experts=7,slots=1,adapter"`` -> ``["linear", "soft:experts=7,slots=1", "adapter"]``:
    a comma-separated item holding ``=`` but no ``:`` continues the previous spec's options."""
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item:
            if not specs:
                raise SoftmoaError(f"method spec {item!r} has options but no method name (use name:key=value)")
            specs[-1] += "," + item
        else:
            specs.append(item)
    if not specs:
        raise SoftmoaError("no methods given")
    return specs


def parse_method(spec: str) -> MethodConfig:
    """``"name"`` or ``"name:key=value,key=value"`` -> the method's validated config.

    Values are validated (and converted) by the method's pydantic config; ``a+b`` gives a
    tuple, e.g. ``lora:targets=q+k+v``.
    """
    name, _, text = spec.strip().partition(":")
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key:
            raise SoftmoaError(f"method {spec!r}: expected key=value, got {item!r}")
        options[key] = tuple(value.split("+")) if "+" in value else value
    try:
        return method_config(name.strip(), **options)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in error.errors())
        raise SoftmoaError(f"method {spec!r}: {problems}") from None
    except SoftmoaError as error:
        raise SoftmoaError(f"method {spec!r}: {error}") from None


@dataclass
class _Subject:
    """What one row times: ``step`` (None: forward only) and ``forward``, both on the shared batch."""

    label: str
    model: torch.nn.Module
    forward: Callable[[], object]
    step: Callable[[], object] | None = None
    optimizer: torch.optim.Optimizer | None = None
    config: MethodConfig | None = None
    checkpointed: bool = False
    step_samples: list[float] = field(default_factory=list)
    forward_samples: list[float] = field(default_factory=list)


def _engine_subject(label: str, config: MethodConfig, settings: BenchSettings, x: torch.Tensor,
                    y: torch.Tensor, checkpointed: bool = False) -> _Subject:
    from .models.backbone import set_activation_checkpointing
    from .petl.build import build_model

    model = build_model(settings.ast_config(), config, settings.num_classes).to(settings.device)
    set_activation_checkpointing(model, checkpointed)
    subject = _training_subject(label + CHECKPOINTED if checkpointed else label, model, x, y, config)
    subject.checkpointed = checkpointed
    return subject


def _training_subject(label: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      config: MethodConfig | None = None) -> _Subject:
    """A training step (AdamW on the trainable parameters) and an eval forward of ``model`` on ``x, y``."""
    import torch
    import torch.nn.functional as F

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return _Subject(label, model, forward, step, optimizer, config)


def _forward_subject(label: str, model: torch.nn.Module, x: torch.Tensor) -> _Subject:
    """An outside model taking the same features ``x``, timed forward only."""
    import torch

    model = model.eval()

    def forward() -> None:
        with torch.no_grad():
            model(x)

    return _Subject(label, model, forward)


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(function: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    function()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def _storage_bytes(tensors, seen: set[int]) -> int:
    """Bytes of the storages behind ``tensors`` not already in ``seen`` (data pointers); updates ``seen``."""
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


def _peak_of(changes: list[tuple[int, int]]) -> int:
    """Highest running total of ``(time_ns, bytes)`` allocations (frees negative), in time order, from 0."""
    live = peak = 0
    for _, nbytes in sorted(changes, key=lambda change: change[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


def _cpu_step_bytes(subject: _Subject) -> int:
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
    return _peak_of([(event.start_ns(), event.nbytes()) for event in events
                     if event.name() == "[memory]" and event.device_type().name == "CPU"])


def _cuda_step_bytes(subject: _Subject, device: torch.device) -> int:
    """Peak bytes of CUDA memory during one training step above what was allocated before it."""
    import torch

    _sync(device)
    subject.optimizer.zero_grad(set_to_none=True)  # so the step's gradients count in its peak
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    subject.step()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def _step_bytes(subject: _Subject, device: torch.device) -> int:
    """The step's own peak memory, measured as ``CPU_MEMORY`` / ``CUDA_MEMORY`` say."""
    return _cuda_step_bytes(subject, device) if device.type == "cuda" else _cpu_step_bytes(subject)


def _persistent_bytes(subject: _Subject) -> int:
    """Bytes of the model's parameters and the optimiser's state (distinct storages)."""
    import torch

    params = list(subject.model.parameters())
    state = [v for s in subject.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return _storage_bytes(params + state, set())


def step_peak_memory(model: torch.nn.Module, batch_size: int, frames: int, mel_bins: int,
                     device: str | torch.device = "cpu") -> int:
    """Peak bytes of one training step of ``model`` on a random ``[batch_size, frames, mel_bins]``
    batch, measured as the benchmark rows are (``CPU_MEMORY`` / ``CUDA_MEMORY``). The step
    updates the model's trainable weights."""
    import torch

    device = torch.device(device)
    x = torch.randn(batch_size, frames, mel_bins, device=device)
    y = torch.randint(model.head.fc.out_features, (batch_size,), device=device)
    subject = _training_subject("step", model.to(device), x, y)
    return _step_bytes(subject, device) + _persistent_bytes(subject)


def _environment(device: torch.device) -> dict:
    """Versions, threads, processor and the 1/5/15-minute load average at the end of the run
    (other processes on the cores inflate small ops most: they wait for descheduled threads)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
            "cpu": cpu, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_average": os.getloadavg()}


def _resolve_reference(reference: str, labels: list[str]) -> str:
    """The label equal to ``reference``, else the first whose method name is ``reference``."""
    if reference in labels:
        return reference
    for label in labels:
        if label.partition(":")[0] == reference:
            return label
    raise SoftmoaError(f"reference method {reference!r} is not among the benchmarked methods: {', '.join(labels)}")


CompareModel = Callable[[BenchSettings], "torch.nn.Module"]
"""Builds an outside AST (e.g. transformers' ASTModel) at the bench's dims, taking features
``[b, frames, 128]``; the engine itself never imports such a library."""


def run_bench(specs: list[str], settings: BenchSettings = BenchSettings(), reference: str = "adapter",
              compare: CompareModel | None = None, progress: Progress | None = None) -> BenchResult:
    """Benchmark the methods ``specs`` (see ``parse_method``) at ``settings``.

    ``reference``: a spec, or a method name (its first spec), whose times and memory the
    ratios divide by. ``compare`` also times an outside AST's forward (the row labelled
    ``transformers``); ``linear`` (the bare engine AST and a head) is then added when missing,
    as the engine side of that comparison.
    """
    settings.check()
    labels = [spec.strip() for spec in specs]
    if len(set(labels)) != len(labels):
        raise SoftmoaError(f"a method is listed twice: {', '.join(labels)}")
    configs = [parse_method(label) for label in labels]
    if compare is not None and "linear" not in labels:
        labels.append("linear")
        configs.append(parse_method("linear"))
    reference = _resolve_reference(reference, labels)
    import torch

    threads = torch.get_num_threads()
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    try:
        return _measure(labels, configs, settings, reference, compare, progress)
    finally:
        torch.set_num_threads(threads)


def _measure(labels: list[str], configs: list[MethodConfig], settings: BenchSettings, reference: str,
             compare: CompareModel | None, progress: Progress | None) -> BenchResult:
    import torch

    report = progress or (lambda done, total, text: None)
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    x = torch.randn(settings.batch, settings.frames, 128, device=device)  # [b, frames, mel bins]
    y = torch.randint(settings.num_classes, (settings.batch,), device=device)
    subjects = []
    for label, config in zip(labels, configs):
        for checkpointed in (False, True) if settings.activation_checkpointing else (False,):
            report(0, settings.repeats, f"building {label}{CHECKPOINTED if checkpointed else ''}")
            subjects.append(_engine_subject(label, config, settings, x, y, checkpointed))
    if compare is not None:
        report(0, settings.repeats, "building the comparison model")
        subjects.append(_forward_subject(TRANSFORMERS, compare(settings).to(device), x))
    _time_rounds(subjects, settings, device, report)
    report(settings.repeats, settings.repeats, "measuring memory")
    rows = [_row(subject, device) for subject in subjects]
    ref = next(row for row in rows if row.label == reference)
    for row in rows:
        row.forward_ratio = row.forward_ms / ref.forward_ms
        if row.step_ms is not None:
            row.step_ratio = row.step_ms / ref.step_ms
            row.peak_ratio = row.peak_bytes / ref.peak_bytes
    _compare_to_plain(rows)
    measure = CUDA_MEMORY if device.type == "cuda" else CPU_MEMORY
    return BenchResult(settings, _environment(device), reference, measure, rows)


def _compare_to_plain(rows: list[MethodBench]) -> None:
    """Set each checkpointed row's step-time and memory ratios to the same method's plain row."""
    plain = {row.label: row for row in rows if not row.activation_checkpointing}
    for row in rows:
        if row.activation_checkpointing:
            base = plain[row.label.removesuffix(CHECKPOINTED)]
            row.step_ratio_to_plain = statistics.median(
                step / plain_step for step, plain_step in zip(row.step_samples_ms, base.step_samples_ms))
            row.peak_ratio_to_plain = row.peak_bytes / base.peak_bytes
            row.step_bytes_ratio_to_plain = row.step_bytes / base.step_bytes


def _time_rounds(subjects: list[_Subject], settings: BenchSettings, device: torch.device, report: Progress) -> None:
    """Warm-up rounds, then timed ones; each round runs every subject's step and forward once."""
    for round_ in range(settings.warmup + settings.repeats):
        timed = round_ >= settings.warmup
        done = max(0, round_ - settings.warmup)
        stage = f"round {done + 1}/{settings.repeats}" if timed else f"warm-up {round_ + 1}/{settings.warmup}"
        shift = round_ % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:  # rotate so no method always goes first
            report(done, settings.repeats, f"{stage}: {subject.label}")
            if subject.step is not None:
                elapsed = _time_ms(subject.step, device)
                if timed:
                    subject.step_samples.append(elapsed)
            elapsed = _time_ms(subject.forward, device)
            if timed:
                subject.forward_samples.append(elapsed)


def _row(subject: _Subject, device: torch.device) -> MethodBench:
    """Medians of the samples; for a method also peak memory (one more step) and its cost."""
    from .accounting import cost

    forward_ms = statistics.median(subject.forward_samples)
    if subject.step is None:
        total = sum(p.numel() for p in subject.model.parameters())
        return MethodBench(subject.label, {}, None, forward_ms, None, None, total, None,
                           forward_samples_ms=subject.forward_samples)
    step_bytes = _step_bytes(subject, device)
    spent = cost(subject.model)
    return MethodBench(subject.label, subject.config.model_dump(mode="json"), statistics.median(subject.step_samples),
                       forward_ms, step_bytes + _persistent_bytes(subject), spent.trainable_params,
                       spent.total_params, spent.flops, subject.step_samples, subject.forward_samples,
                       step_bytes=step_bytes, activation_checkpointing=subject.checkpointed)
