"""A benchmark's rows and result: times in ms, memory in bytes, FLOPs per example; their ratios,
notes and JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from .settings import BenchSettings

TRANSFORMERS = "transformers"
"""Label of the row timing transformers' ASTModel forward."""

CHECKPOINTED = " +checkpointing"
"""Suffix of the label of a method's row with activation checkpointing."""


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


def set_ratios(rows: list[MethodBench], reference: str) -> None:
    """Set every row's ratios to the row labelled ``reference``, and each checkpointed row's
    step-time and memory ratios to the same method's plain row."""
    ref = next(row for row in rows if row.label == reference)
    for row in rows:
        row.forward_ratio = row.forward_ms / ref.forward_ms
        if row.step_ms is not None:
            row.step_ratio = row.step_ms / ref.step_ms
            row.peak_ratio = row.peak_bytes / ref.peak_bytes
    plain = {row.label: row for row in rows if not row.activation_checkpointing}
    for row in rows:
        if row.activation_checkpointing:
            base = plain[row.label.removesuffix(CHECKPOINTED)]
            row.step_ratio_to_plain = statistics.median(
                step / plain_step for step, plain_step in zip(row.step_samples_ms, base.step_samples_ms))
            row.peak_ratio_to_plain = row.peak_bytes / base.peak_bytes
            row.step_bytes_ratio_to_plain = row.step_bytes / base.step_bytes


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
        that a single timed round is no measurement. Settings in backticks, as ``BenchSettings``."""
        classes = self.settings.num_classes
        notes = [f"trainable parameters and FLOPs include a {classes}-class head (`classes` {classes})"]
        if self.settings.repeats == 1:
            notes.append("warning: one timed round (`repeats` 1) is a single sample per method, within the machine's "
                         "noise; use `repeats` 5 or more to compare methods")
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
