"""``run_bench``: check the specs and settings, build the subjects, time them round-robin,
measure each method's peak memory and cost, and give the rows with their ratios."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import SoftmoaError
from .memory import CPU_MEMORY, CUDA_MEMORY, persistent_bytes, step_bytes
from .results import CHECKPOINTED, TRANSFORMERS, BenchResult, MethodBench, set_ratios
from .settings import BenchSettings
from .specs import parse_method
from .subjects import Subject, engine_subject, forward_subject
from .timing import Progress, time_rounds

if TYPE_CHECKING:
    import torch

    from ..petl.methods import MethodConfig

CompareModel = Callable[[BenchSettings], "torch.nn.Module"]
"""Builds an outside AST (e.g. transformers' ASTModel) at the bench's dims, taking features
``[b, frames, 128]``; the engine itself never imports such a library."""


def run_bench(specs: list[str], settings: BenchSettings = BenchSettings(), reference: str = "adapter",
              compare: CompareModel | None = None, progress: Progress | None = None) -> BenchResult:
    """Benchmark the methods ``specs`` (see ``parse_method``) at ``settings``.

    ``reference``: a spec, or a method name (its first spec), whose times and memory the
    ratios divide by. ``compare`` also times an outside AST's forward (the row labelled
    ``transformers``; on the AST only); ``linear`` (the bare engine AST and a head) is then added
    when missing, as the engine side of that comparison.
    """
    settings.check()
    if compare is not None and settings.backbone != "ast":
        raise SoftmoaError(f"`compare_transformers` times transformers' ASTModel: give `backbone` ast, not "
                           f"{settings.backbone}")
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


def _resolve_reference(reference: str, labels: list[str]) -> str:
    """The label equal to ``reference``, else the first whose method name is ``reference``."""
    if reference in labels:
        return reference
    for label in labels:
        if label.partition(":")[0] == reference:
            return label
    raise SoftmoaError(f"reference method {reference!r} is not among the benchmarked methods: {', '.join(labels)}")


def _measure(labels: list[str], configs: list[MethodConfig], settings: BenchSettings, reference: str,
             compare: CompareModel | None, progress: Progress | None) -> BenchResult:
    import torch

    report = progress or (lambda done, total, text: None)
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    x = torch.randn(settings.batch, *settings.input_shape(), device=device)  # [b, frames, mel bins] or [b, samples]
    y = torch.randint(settings.num_classes, (settings.batch,), device=device)
    subjects = []
    for label, config in zip(labels, configs):
        for checkpointed in (False, True) if settings.activation_checkpointing else (False,):
            report(0, settings.repeats, f"building {label}{CHECKPOINTED if checkpointed else ''}")
            subjects.append(engine_subject(label, config, settings, x, y, checkpointed))
    if compare is not None:
        report(0, settings.repeats, "building the comparison model")
        subjects.append(forward_subject(TRANSFORMERS, compare(settings).to(device), x))
    time_rounds(subjects, settings, device, report)
    report(settings.repeats, settings.repeats, "measuring memory")
    rows = [_row(subject, device) for subject in subjects]
    set_ratios(rows, reference)
    measure = CUDA_MEMORY if device.type == "cuda" else CPU_MEMORY
    return BenchResult(settings, _environment(device), reference, measure, rows)


def _row(subject: Subject, device: torch.device) -> MethodBench:
    """Medians of the samples; for a method also peak memory (one more step) and its cost."""
    from ..accounting import cost

    forward_ms = statistics.median(subject.forward_samples)
    if subject.step is None:
        total = sum(p.numel() for p in subject.model.parameters())
        return MethodBench(subject.label, {}, None, forward_ms, None, None, total, None,
                           forward_samples_ms=subject.forward_samples)
    own = step_bytes(subject, device)
    spent = cost(subject.model)
    return MethodBench(subject.label, subject.config.model_dump(mode="json"), statistics.median(subject.step_samples),
                       forward_ms, own + persistent_bytes(subject), spent.trainable_params,
                       spent.total_params, spent.flops, subject.step_samples, subject.forward_samples,
                       step_bytes=own, activation_checkpointing=subject.checkpointed)


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
