"""The run folder: effective config, run description, per-fold/epoch metrics and a CSV log;
reading a finished run back (its best model per fold, the latest run, a run as a backbone),
given by its folder or by the hub id of a pushed run.

Layout (a k-fold run has one ``fold-K/`` per fold holding what the run folder holds here)::

    runs/<dataset>-<method>-<time>/
      config.yaml  run.json  metrics.json  log.csv
      README.md                           the model card (train/model_card.py), once finished
      adapter.safetensors  adapter.json   the best epoch's trained tensors
      state.pt                            resume state (removed when the fold is done)
      backbone/                           a randomly initialised backbone, when one is used
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

from ... import __version__
from ..config import RunConfig, dump_config, read_config
from ..errors import SoftmoaError
from ..fsutil import atomic_write_json, atomic_write_text
from ..hub import fetch_repo, is_hub_id, repo_has
from ..data.features import FeatureConfig
from ..models.ast import AST
from ..models.pretrained import Pretrained, load_pretrained
from ..models.shipped import EMBEDDED, embedded_backbone
from ..petl.adapter_files import ADAPTER_WEIGHTS, backbone_reference, load_adapter
from .metrics import mean_std

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LOG_FILE = "log.csv"
CARD_FILE = "README.md"
LOG_COLUMNS = ["fold", "epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr", "seconds",
               "data_wait"]  # data_wait: seconds the epoch's steps waited for their batches (loop.py)
# The test metrics summarised over folds, per task (``metrics.json``'s "task").
SUMMARY_METRICS = {"singlelabel": ("accuracy", "macro_f1"), "multilabel": ("mAP", "micro_f1", "macro_f1", "d_prime")}


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
    """Writes a run's files; every write is atomic and rebuilt from the whole record."""

    def __init__(self, path: Path):
        """Open a run folder, reading what an interrupted run already recorded."""
        self.path = Path(path)
        self.histories: dict[str, list[dict]] = {}
        self.results: dict[str, dict] = {}
        if (self.path / METRICS_FILE).is_file():
            saved = json.loads((self.path / METRICS_FILE).read_text())
            self.histories = {k: v["epochs"] for k, v in saved["folds"].items()}
            self.results = {k: v["test"] for k, v in saved["folds"].items() if v.get("test")}

    @staticmethod
    def key(fold: int | None) -> str:
        return "all" if fold is None else str(fold)

    def fold_dir(self, fold: int | None) -> Path:
        directory = self.path if fold is None else self.path / f"fold-{fold}"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def start(self, config: RunConfig, folds: list[int | None], backbone: str, command: str | None = None) -> None:
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
        self.run = {"format": "softmoa-run", "version": __version__, "dataset": config.data.dataset,
                    "method": config.method.name, "folds": [f for f in folds if f is not None],
                    "backbone": backbone, "command": command, "finished": False}
        atomic_write_json(self.path / RUN_FILE, self.run)

    def record(self, fold: int | None, history: list[dict], result: dict | None = None) -> None:
        """Store a fold's epochs (and its test result once done) and rewrite metrics and log."""
        self.histories[self.key(fold)] = history
        if result is not None:
            self.results[self.key(fold)] = result
        metrics = self.metrics()
        atomic_write_json(self.path / METRICS_FILE, metrics)
        columns = LOG_COLUMNS if metrics["task"] == "singlelabel" else [
            "valid_mAP" if column == "valid_accuracy" else column for column in LOG_COLUMNS]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for key, epochs in self.histories.items():
            for row in epochs:
                writer.writerow({"fold": key, **{k: _round(v) for k, v in row.items()}})
        atomic_write_text(self.path / LOG_FILE, buffer.getvalue())

    def metrics(self) -> dict:
        """Per fold its epochs and test result, the summary over folds, and the ``task``
        ("multilabel" when the epochs were scored by validation mAP, else "singlelabel")."""
        folds = {key: {"epochs": epochs, "test": self.results.get(key)} for key, epochs in self.histories.items()}
        multi = any("valid_mAP" in row for epochs in self.histories.values() for row in epochs)
        return {"dataset": self.run["dataset"], "method": self.run["method"],
                "task": "multilabel" if multi else "singlelabel", "folds": folds,
                "summary": summarize(list(self.results.values()))}

    def finish(self) -> dict:
        self.run["finished"] = True
        atomic_write_json(self.path / RUN_FILE, self.run)
        return self.metrics()


def summarize(results: list[dict]) -> dict:
    """Mean and standard deviation over folds of the test metrics of the task
    (``SUMMARY_METRICS``: accuracy and macro-F1; multi-label: mAP, micro-F1, macro-F1, d-prime)."""
    if not results:
        return {}
    summary = {"folds": len(results)}
    for name in SUMMARY_METRICS["multilabel" if "mAP" in results[0] else "singlelabel"]:
        mean, std = mean_std([r[name] for r in results])
        summary |= {f"{name}_mean": mean, f"{name}_std": std}
    return summary


def _round(value):
    """A float to 6 significant digits (a late learning rate of 6.3e-05 keeps its digits)."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


# ---------------------------------------------------------------- reading finished runs

def resolve_run(reference: str | Path) -> Path:
    """A run given by folder or hub id as a local folder: an existing path as it is; otherwise a
    hub id (``owner/name``) of a pushed run, through the Hugging Face cache (offline when
    ``HF_HUB_OFFLINE=1``). Anything else comes back as given, for ``read_run`` to refuse."""
    path = Path(reference).expanduser()
    return path if path.exists() or not is_hub_id(reference) else fetch_repo(str(reference))


def output_folder(reference: str | Path) -> Path:
    """Where a command writes what it makes for a run (a confusion matrix, expert shares): the
    run folder itself, or for a run from the hub ``<runs>/hub/<owner>--<name>/`` (the hub cache
    stays as it was downloaded)."""
    path = Path(reference).expanduser()
    if path.exists() or not is_hub_id(reference):
        return path
    folder = runs_dir() / "hub" / str(reference).replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def checkpoint_path(reference: str, base: Path | None = None) -> Path:
    """A checkpoint reference as a local path: relative to ``base`` when it is there, the hub id
    of a pushed run as its folder in the hub cache, anything else as given (a backbone's hub
    id is left to ``load_pretrained``); ``embedded``: the shipped backbone, checked."""
    if reference == EMBEDDED:
        return embedded_backbone()
    path = Path(reference).expanduser()
    if base is not None and not path.is_absolute() and (base / path).exists():
        return base / path
    if not path.exists() and is_hub_id(reference) and repo_has(reference, RUN_FILE):
        return fetch_repo(reference)
    return path


def load_backbone(reference: str, base: Path | None = None) -> Pretrained:
    """A backbone from a checkpoint reference: hub id or path (relative to ``base``), or a run
    (folder or pushed run's hub id) of a full fine-tune or linear probe."""
    path = checkpoint_path(reference, base)
    if (path / RUN_FILE).is_file():
        model, labels, _ = load_run(path)
        run = json.loads((path / RUN_FILE).read_text())
        if run["method"] not in ("full", "linear"):
            raise SoftmoaError(f"{path}: a {run['method']!r} run has adapter modules; only a run of method "
                               "'full' (or 'linear') can serve as a backbone")
        return Pretrained(model, labels, False, str(path), {"has_head": True})
    return load_pretrained(path if path.exists() else reference)


def read_run(run_dir: str | Path) -> dict:
    """A run's ``run.json`` (the run a folder or hub id, see ``resolve_run``); a SoftmoaError
    says when the run is missing or not a run."""
    folder = resolve_run(run_dir)
    if not folder.is_dir():
        raise SoftmoaError(f"{run_dir}: no such run folder; give a folder made by `softmoa finetune` (under runs/) "
                           "or the hub id of a pushed run (owner/name)")
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        raise SoftmoaError(f"{run_dir}: not a softmoa run folder (no readable {RUN_FILE}); give a folder made by "
                           "`softmoa finetune` or the hub id of a run pushed by `softmoa push`") from None


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The effective config a run was trained with (its ``config.yaml``), once the folder is
    known to be a run."""
    read_run(run_dir)
    return read_config(resolve_run(run_dir) / CONFIG_FILE)


def run_data(run_dir: str | Path, dataset: str | None = None):
    """The data section a run is scored on: its own, or with ``dataset`` (a copy of its data set
    elsewhere, e.g. of a local data set that did not travel with a pushed run) in its place. A
    run whose local data set stayed on the machine that trained it needs ``dataset``."""
    config = read_run_config(run_dir)
    if dataset is not None:
        return config.data.model_copy(update={"dataset": str(dataset)})
    if read_run(run_dir).get("dataset_local"):
        raise SoftmoaError(f"{run_dir}: trained on a local data set ({config.data.dataset}) that does not travel with "
                           f"the run; pass --dataset PATH with your copy of {config.data.dataset}")
    return config.data


def fold_directory(run_dir: str | Path, fold: int | None = None) -> Path:
    """Where a fold's checkpoint lives: the run folder itself, or ``fold-K/`` of a k-fold run
    (``fold`` None: the first fold)."""
    folds = read_run(run_dir).get("folds") or [None]
    if fold is not None and fold not in folds:
        raise SoftmoaError(f"{run_dir}: no fold {fold}; the run has folds {folds}")
    chosen = folds[0] if fold is None else fold
    folder = resolve_run(run_dir)
    return folder if chosen is None else folder / f"fold-{chosen}"


def load_run(run_dir: str | Path, fold: int | None = None) -> tuple[AST, list[str], FeatureConfig]:
    """The best model of a finished run: ``(model in eval mode, label names, feature config)``.

    A k-fold run holds one model per fold; ``fold`` None takes the first.
    """
    directory = fold_directory(run_dir, fold)
    if not (directory / ADAPTER_WEIGHTS).is_file():
        raise SoftmoaError(f"{directory}: training has not finished (no {ADAPTER_WEIGHTS}); "
                           f"continue it with `softmoa finetune --resume {run_dir}`")
    return load_adapter(directory, load_backbone(backbone_reference(directory), directory))


def latest_run(root: str | Path | None = None) -> Path | None:
    """The most recently finished run under ``root`` (``runs_dir``), by its run file, or None."""
    finished = [path.parent for path in runs_dir(root).glob(f"*/{RUN_FILE}")
                if json.loads(path.read_text()).get("finished")]
    return max(finished, key=lambda run: (run / RUN_FILE).stat().st_mtime, default=None)
