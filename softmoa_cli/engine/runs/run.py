"""A run read back as a value: ``Run.open(folder or hub id)`` gives its description, config,
folds, the adapter files of each fold, its results, and ``model(fold)`` / ``classifier(fold)``,
so that predict, evaluate, embed, export, analyze, push and ablate all get a run's model and
results the same way. A pushed run is read from the Hugging Face cache by its hub id.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from ..classifier import Classifier
from ..config import DataConfig, RunConfig, read_config
from ..embedded.record import EMBEDDED, embedded_backbone
from ..errors import SoftmoaError
from ..hub import fetch_repo, is_hub_id, repo_has
from ..models.pretrained import Pretrained, load_pretrained
from ..petl.adapter_files import AdapterInfo, load_adapter
from ..task import SINGLE, Task
from .files import ADAPTER_WEIGHTS, CONFIG_FILE, RUN_FILE
from .folder import RunInfo, runs_dir, runs_dir_said
from .results import RunMetrics

BACKBONE_METHODS = ("full", "linear")  # a run of these has no adapter modules: it can serve as a backbone


class Run:
    """A run folder (or a pushed run's snapshot in the hub cache), read. ``reference``: how it
    was given (a folder or a hub id); ``path``: the local folder."""

    def __init__(self, path: Path, reference: str):
        self.path, self.reference = Path(path), str(reference)

    @classmethod
    def open(cls, reference: str | Path) -> Run:
        """The run a folder or hub id names; a SoftmoaError says when it is missing or not a run."""
        path = Path(reference).expanduser()
        if not path.exists() and is_hub_id(reference):
            path = fetch_repo(str(reference))
        if not path.is_dir():
            raise SoftmoaError(f"{reference}: no such run folder; give a folder made by `softmoa finetune` (under "
                               "runs/) or the hub id of a pushed run (owner/name)")
        run = cls(path, str(reference))
        run.info  # a SoftmoaError now if it is no run
        return run

    @property
    def from_hub(self) -> bool:
        """Whether the run was given by a hub id (not a local folder)."""
        return not Path(self.reference).expanduser().exists() and is_hub_id(self.reference)

    @property
    def name(self) -> str:
        """The run's folder name, or the last part of its hub id."""
        return self.reference.rstrip("/").split("/")[-1] if self.from_hub else self.path.name

    @cached_property
    def info(self) -> RunInfo:
        try:
            return RunInfo.from_dict(json.loads((self.path / RUN_FILE).read_text()))
        except (OSError, json.JSONDecodeError, TypeError, KeyError):
            raise SoftmoaError(f"{self.reference}: not a softmoa run folder (no readable {RUN_FILE}); give a folder "
                               "made by `softmoa finetune` or the hub id of a run pushed by `softmoa push`") from None

    @cached_property
    def config(self) -> RunConfig:
        """The effective config the run was trained with (``config.yaml``)."""
        return read_config(self.path / CONFIG_FILE)

    @property
    def folds(self) -> list[int | None]:
        """The run's folds (``[None]``: a fixed split)."""
        return list(self.info.folds) or [None]

    def fold_dir(self, fold: int | None = None) -> Path:
        """Where a fold's adapter files live: the run folder, or ``fold-K/`` (``fold`` None: the first fold)."""
        if fold is not None and fold not in self.folds:
            raise SoftmoaError(f"{self.reference}: no fold {fold}; the run has folds {self.folds}")
        chosen = self.folds[0] if fold is None else fold
        return self.path if chosen is None else self.path / f"fold-{chosen}"

    def adapter(self, fold: int | None = None) -> AdapterInfo:
        """The adapter files' description of a fold: backbone, method, labels, features, task, thresholds."""
        directory = self.fold_dir(fold)
        if not (directory / ADAPTER_WEIGHTS).is_file():
            raise SoftmoaError(f"{directory}: training has not finished (no {ADAPTER_WEIGHTS}); "
                               f"continue it with `softmoa finetune --resume {self.reference}`")
        return AdapterInfo.read(directory)

    @property
    def task(self) -> Task:
        """The run's task (single- or multi-label), as its adapter files record it."""
        return self.adapter().task

    @property
    def labels(self) -> list[str]:
        """The class names, in the order of the head's outputs."""
        return self.adapter().labels

    def thresholds(self, fold: int | None = None) -> list[float] | None:
        """The fold's per-class thresholds tuned on its validation clips (None: a task without them)."""
        return self.adapter(fold).thresholds

    @property
    def backbone(self) -> str:
        """The backbone reference the run recorded: a hub id, ``embedded``, or a folder."""
        return self.info.backbone

    @cached_property
    def metrics(self) -> RunMetrics:
        """The run's results: every fold's epochs and test scores (``metrics.json``)."""
        return RunMetrics.read(self.path)

    def model(self, fold: int | None = None):
        """The fold's best model (``fold`` None: the first fold's), in eval mode."""
        info = self.adapter(fold)
        return load_adapter(self.fold_dir(fold), load_backbone(info.backbone, self.fold_dir(fold)))

    def classifier(self, fold: int | None = None) -> Classifier:
        """The fold's model with its labels, task, thresholds and features, ready to score."""
        info = self.adapter(fold)
        return Classifier(self.model(fold), info.labels, info.task, info.features, info.thresholds,
                          f"run {self.reference}")

    def data(self, dataset: str | None = None) -> DataConfig:
        """The data section the run is scored on: its own, or with ``dataset`` (a copy of its data
        set elsewhere) in its place. A run whose local data set stayed on the machine that trained
        it (``RunInfo.dataset_local``) needs ``dataset``."""
        if dataset is not None:
            return self.config.data.model_copy(update={"dataset": str(dataset)})
        if self.info.dataset_local:
            raise SoftmoaError(f"{self.reference}: trained on a local data set ({self.config.data.dataset}) that "
                               f"does not travel with the run; pass `dataset` PATH with your copy of "
                               f"{self.config.data.dataset}")
        return self.config.data

    @property
    def output_folder(self) -> Path:
        """Where a command writes what it makes for the run (a confusion matrix, expert shares): the
        run folder, or for a run from the hub ``<runs>/hub/<owner>--<name>/`` (the hub cache stays as
        it was downloaded)."""
        if not self.from_hub:
            return self.path
        folder = runs_dir() / "hub" / self.reference.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def backbone_path(reference: str, base: Path | None = None) -> Path:
    """A backbone reference as a local path: relative to ``base`` when it is there, the hub id
    of a pushed run as its folder in the hub cache, anything else as given (a backbone's hub
    id is left to ``load_pretrained``); ``embedded``: the embedded backbone, checked."""
    if reference == EMBEDDED:
        return embedded_backbone()
    path = Path(reference).expanduser()
    if base is not None and not path.is_absolute() and (base / path).exists():
        return base / path
    if not path.exists() and is_hub_id(reference) and repo_has(reference, RUN_FILE):
        return fetch_repo(reference)
    return path


def load_backbone(reference: str, base: Path | None = None) -> Pretrained:
    """A backbone from a reference: a hub id or path (relative to ``base``), ``embedded``, or a
    run (folder or pushed run's hub id) of a full fine-tune or linear probe."""
    path = backbone_path(reference, base)
    if (path / RUN_FILE).is_file():
        run = Run(path, str(path))
        if run.info.method not in BACKBONE_METHODS:
            raise SoftmoaError(f"{path}: a {run.info.method!r} run has adapter modules; only a run of method "
                               "'full' (or 'linear') can serve as a backbone")
        return Pretrained(run.model(), run.adapter().labels, SINGLE, str(path), {"has_head": True})
    return load_pretrained(path if path.exists() else reference)


def latest_run(root: str | Path | None = None) -> Path | None:
    """The most recently finished run under ``root`` (``runs_dir``), by its run file, or None."""
    finished = [path.parent for path in runs_dir(root).glob(f"*/{RUN_FILE}")
                if json.loads(path.read_text()).get("finished")]
    return max(finished, key=lambda run: (run / RUN_FILE).stat().st_mtime, default=None)


def open_classifier(checkpoint: str | None = None, run: str | Path | None = None,
                    runs_root: str | Path | None = None) -> Classifier:
    """The classifier to score with: a ``checkpoint`` (an AST or Hugging Face audio classifier, a
    standalone export), a finetune ``run`` (its first fold), or neither: the most recent finished
    run under ``runs_root`` (``runs_dir``)."""
    if checkpoint is not None and run is not None:
        raise SoftmoaError("give `checkpoint` or `run`, not both")
    if checkpoint is not None:
        return Classifier.from_pretrained(load_pretrained(checkpoint))
    run = run or latest_run(runs_root)
    if run is None:
        raise SoftmoaError(f"no model given and no finished run under {runs_dir_said(runs_root)}: pass `run` "
                           "RUN_DIR or `checkpoint` PATH_OR_HUB_ID, or train one with `softmoa finetune`")
    return Run.open(run).classifier()
