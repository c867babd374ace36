"""The progress protocol: the engine reports events, a front end (the CLI's rich view) renders them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runs.results import EpochRow, FoldResult


@dataclass(frozen=True)
class StepInfo:
    """One optimiser step. ``loss`` and ``accuracy`` are running means over the epoch so far;
    ``hit`` says what ``accuracy`` counts (``Task.hit``: a clip's top label right, or for a
    multi-label run one of its labels). ``data_wait_s``: seconds the epoch's steps so far
    waited for their batches."""

    fold: int | None
    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based within the epoch
    steps: int
    loss: float
    accuracy: float
    lr: float
    samples_per_s: float
    eta_s: float  # for the rest of this fold
    hit: str = "accuracy"
    data_wait_s: float = 0.0

    def scalars(self) -> dict[str, float]:
        """The step's figures for a tracker (``tracking.py``), named ``step/...``."""
        return {"step/loss": self.loss, "step/accuracy": self.accuracy, "step/lr": self.lr,
                "step/samples_per_s": self.samples_per_s, "step/data_wait": self.data_wait_s}


class Callback:
    """No-op base; override what you render. Only the process of rank 0 receives events."""

    def fold_start(self, fold: int | None, folds: int, epochs: int, steps: int) -> None: ...

    def step(self, info: StepInfo) -> None: ...

    def epoch_end(self, fold: int | None, row: EpochRow) -> None: ...

    def fold_end(self, fold: int | None, result: FoldResult) -> None: ...

    def message(self, text: str) -> None: ...

    def advise(self, text: str) -> None:
        """Advice the user can act on (a better backbone to get, a setting to choose): a front
        end says each once per command, however many runs the command trains."""
        self.message(text)
