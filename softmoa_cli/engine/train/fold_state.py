"""Where a fold stands, as its resume state keeps it (``resume_state.py``): the position, the
epoch's running sums, the epochs done, the best epoch so far and the last learning rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ..runs.results import EpochRow

if TYPE_CHECKING:
    import torch


@dataclass
class Running:
    """Sums over the epoch so far, all ranks: training loss, correct predictions, clips. A
    multi-label clip counts as correct when its top-scored label is one of its labels; with mixup,
    the labels are those of the clip that dominates the mixture. The loss is the one trained
    (class-weighted, against mixed targets, when those are on)."""

    loss: float = 0.0
    correct: float = 0.0
    clips: float = 0.0
    data_wait: float = 0.0  # seconds the steps waited for their batch (this rank)

    def add(self, sums: list[float]) -> None:
        self.loss, self.correct, self.clips = (a + b for a, b in zip((self.loss, self.correct, self.clips), sums))

    @property
    def mean_loss(self) -> float:
        return self.loss / self.clips

    @property
    def accuracy(self) -> float:
        return self.correct / self.clips


@dataclass
class Best:
    """The epoch with the best validation score (accuracy, or mAP for multi-label), a copy of its
    trained tensors and, multi-label, the thresholds tuned on its validation scores."""

    epoch: int = 0
    score: float = -1.0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    thresholds: list[float] | None = None


@dataclass
class FoldState:
    """Where a fold stands: ``epoch`` epochs done, ``step`` the next step of the current one."""

    epoch: int = 0
    step: int = 0
    running: Running = field(default_factory=Running)
    history: list[EpochRow] = field(default_factory=list)
    seconds: float = 0.0  # training time over every session, validation excluded
    best: Best = field(default_factory=Best)
    lr: float = 0.0  # the learning rate the last optimiser step used

    def to_dict(self) -> dict:
        """Plain containers and tensors, as ``torch.load(weights_only=True)`` reads them back."""
        state = asdict(self)
        state["running"] = [self.running.loss, self.running.correct, self.running.clips, self.running.data_wait]
        state["history"] = [row.to_dict() for row in self.history]
        return state

    @classmethod
    def from_dict(cls, saved: dict, metric: str) -> "FoldState":
        """A saved state; ``metric``: the task's validation score, as its epochs name it."""
        best = dict(saved["best"])
        if "valid_accuracy" in best:  # a state saved before multi-label training
            best["score"] = best.pop("valid_accuracy")
        history = [EpochRow.from_dict(row, metric) for row in saved["history"]]
        return cls(saved["epoch"], saved["step"], Running(*saved["running"]), history, saved["seconds"],
                   Best(**best), saved.get("lr", 0.0))
