"""One grid point on disk: its run folder (``<out>/runs/<value>-seed<seed>``) and its result,
``point.json`` (the test score and cost figures), whose presence marks the point done."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, dump_config, read_config
from ..errors import SoftmoaError
from .configs import with_max_length

POINT_FILE = "point.json"


def point_dir(out: Path, value, seed: int) -> Path:
    return out / "runs" / f"{value}-seed{seed}"


@dataclass
class PointResult:
    """One finished run: its test score (mean over its folds; ``metric`` says which: "accuracy",
    or "mAP" for a multi-label run) and its cost figures."""

    value: Any
    seed: int
    score: float
    trainable_params: int
    flops: int  # analytic forward FLOPs per example
    epoch_seconds: float  # mean over the run's epochs
    peak_memory_mib: float  # one training step at the run's batch size
    metric: str = "accuracy"

    def to_dict(self) -> dict:
        """``point.json``: the score under its metric's name (``accuracy`` or ``mAP``), the metric
        named only when it is not accuracy (a single-label point reads as before)."""
        saved = asdict(self)
        saved[self.metric] = saved.pop("score")
        if self.metric == "accuracy":
            saved.pop("metric")
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> "PointResult":
        saved = dict(saved)
        metric = saved.pop("metric", "accuracy")
        score = saved.pop(metric)
        return cls(score=score, metric=metric, **saved)


def saved_max_length(run_dir: Path) -> int | None:
    """The ``data.max_length`` a grid point's run recorded (its own or derived from the data), if any."""
    saved = run_dir / "config.yaml"
    return read_config(saved).data.max_length if saved.is_file() else None


def read_point(run_dir: Path, config: RunConfig) -> PointResult | None:
    """The result of a done grid point, None if not done; a folder of another config is an error
    (a run fills in the ``max_length`` it derived from the data; that is no other config)."""
    saved = run_dir / "config.yaml"
    if saved.is_file() and saved.read_text() != dump_config(with_max_length(config, saved_max_length(run_dir))):
        raise SoftmoaError(f"{run_dir}: holds a run of another config (changed options?); "
                           "use a new `out` for a new study")
    point = run_dir / POINT_FILE
    return PointResult.from_dict(json.loads(point.read_text())) if point.is_file() else None
