"""The run folder as training writes it: the effective config, the run's description
(``RunInfo``, ``run.json``), every fold's epochs and results (``results.RunMetrics``:
``metrics.json``, ``log.csv``), where runs go (``runs_dir``). ``run.py`` reads a run back.

Layout (a k-fold run has one ``fold-K/`` per fold holding what the run folder holds here)::

    runs/<dataset>-<method>-<time>/
      config.yaml  run.json  metrics.json  log.csv
      README.md                           the model card (runs/model_card.py), once finished
      adapter.safetensors  adapter.json   the adapter files: the best epoch's trained tensors
      state.pt                            the resume state (removed when the fold is done)
      backbone/                           a randomly initialised backbone, when one is used
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ... import __version__
from ..config import RunConfig, dump_config
from ..errors import SoftmoaError
from ..fsutil import atomic_write_json, atomic_write_text
from ..task import Task
from .files import ADAPTER_WEIGHTS, CONFIG_FILE, METRICS_FILE, RUN_FILE
from .results import  EpochRow, FoldRecord, FoldResult, RunMetrics, fold_key



@dataclass(frozen=True)
class RunInfo:
    """What ``run.json`` says of a run: its data set and method, its folds (empty: a fixed
    split), its backbone reference, the command that trained it (None: trained from Python),
    whether it finished, the tool's version, and (a run as it travels, ``public.py``) whether
    its data set or backbone stayed on the machine that trained it."""

    dataset: str
    method: str
    folds: list[int]
    backbone: str
    command: str | None = None
    finished: bool = False
    version: str = __version__
    dataset_local: bool = False
    backbone_local: bool = False
    extra: dict = field(default_factory=dict)  # keys of a later version, kept as they were

    def to_dict(self) -> dict:
        saved = {"format": "softmoa-run", **asdict(self)}
        saved |= saved.pop("extra")
        for flag in ("dataset_local", "backbone_local"):
            if not saved[flag]:
                saved.pop(flag)
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> RunInfo:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(**{key: saved[key] for key in known if key in saved},
                   extra={key: value for key, value in saved.items() if key not in known | {"format"}})


RUNS_ENV = "SOFTMOA_RUNS"  # where runs are written and looked for, unless a command is told


def runs_dir(root: str | Path | None = None) -> Path:
    """The runs folder: ``root``, else ``$SOFTMOA_RUNS``, else ``runs/`` of the current folder."""
    return Path(root or os.environ.get(RUNS_ENV) or "runs").expanduser()


def runs_dir_said(root: str | Path | None = None) -> str:
    """Where the runs folder is and why, for a message: ``/abs/runs (runs/ of the current folder)``."""
    why = ("given" if root else f"${RUNS_ENV}" if os.environ.get(RUNS_ENV) else "runs/ of the current folder; "
           f"--runs DIR or ${RUNS_ENV} names another")
    return f"{runs_dir(root).absolute()} ({why})"


def default_run_dir(config: RunConfig, root: str | Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dataset = Path(config.data.dataset).name or "data"
    return runs_dir(root) / f"{dataset}-{config.method.name}-{stamp}"


class RunFolder:
    """Writes a run's files as training goes; every write is atomic and rebuilt from the whole
    record (``RunMetrics``)."""

    def __init__(self, path: Path):
        """Open a run folder, reading what an interrupted run already recorded."""
        self.path = Path(path)
        self.metrics: RunMetrics | None = RunMetrics.read(self.path) if (self.path / METRICS_FILE).is_file() else None

    def fold_dir(self, fold: int | None) -> Path:
        directory = self.path if fold is None else self.path / f"fold-{fold}"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def done(self, fold: int | None) -> bool:
        """Whether the fold finished before an interruption (its result and adapter are there)."""
        record = self.metrics.folds.get(fold_key(fold)) if self.metrics else None
        return bool(record and record.result) and (self.fold_dir(fold) / ADAPTER_WEIGHTS).is_file()

    def start(self, config: RunConfig, folds: list[int | None], backbone: str, task: Task,
              command: str | None = None) -> None:
        """Write the config and run description; on resume, insist the config is the same (and
        keep the command that started the run). ``command``: the command line that trains the
        run, for its model card (None: trained from Python)."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = dump_config(config)
        saved = self.path / CONFIG_FILE
        if saved.is_file() and saved.read_text() != text:
            raise SoftmoaError(f"{self.path}: holds a run with another config; resume it with "
                               f"`softmoa finetune --resume {self.path}` or choose a new --out")
        if (self.path / RUN_FILE).is_file():
            command = json.loads((self.path / RUN_FILE).read_text()).get("command", command)
        atomic_write_text(saved, text)
        self.info = RunInfo(config.data.dataset, config.method.name, [f for f in folds if f is not None], backbone,
                            command)
        atomic_write_json(self.path / RUN_FILE, self.info.to_dict())
        if self.metrics is None:
            self.metrics = RunMetrics(config.data.dataset, config.method.name, task)

    def record(self, fold: int | None, epochs: list[EpochRow], result: FoldResult | None = None) -> None:
        """Store a fold's epochs (and its test result once done); rewrite metrics.json and log.csv."""
        record = self.metrics.folds.setdefault(fold_key(fold), FoldRecord())
        record.epochs = list(epochs)
        record.result = result or record.result
        self.metrics.write(self.path)

    def finish(self) -> RunMetrics:
        self.info = replace(self.info, finished=True)
        atomic_write_json(self.path / RUN_FILE, self.info.to_dict())
        return self.metrics
