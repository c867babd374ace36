"""Sharing a finished run on the Hugging Face Hub: the files that travel (each fold's adapter,
the config, description and metrics, a random backbone kept in the run folder, and a model card
written for the hub id), staged into a folder that ``softmoa push`` uploads, or that
``--dry-run`` leaves for the user to look at. Resume state and feature caches never travel, and
neither do the paths of the machine that trained the run: a local data set, a local backbone
and every path in the recorded command go by their last part (``public_name``), and
``run.json`` marks the data set and backbone that stayed home (``dataset_local``,
``backbone_local``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from ..errors import SoftmoaError
from ..fsutil import atomic_write_json, atomic_write_text
from ..hub import is_hub_id, upload
from .model_card import model_card
from .files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CARD_FILE, CONFIG_FILE, LOG_FILE, METRICS_FILE, RANDOM_DIR, RUN_FILE
from .folder import RunInfo
from .public import is_local_dataset, is_local_path, public_info, public_name
from .run import Run

RUN_FILES = (CONFIG_FILE, RUN_FILE, METRICS_FILE, LOG_FILE)
FOLD_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG)


def shared_files(run: Run) -> list[str]:
    """The files of a finished run that travel, relative to its folder (the card aside: it is
    written for the hub id)."""
    if not run.info.finished:
        raise SoftmoaError(f"{run.reference}: training has not finished; continue it with "
                           f"`softmoa finetune --resume {run.reference}`, then share it")
    folder = run.path
    folds = [f"fold-{fold}/" for fold in run.info.folds] or [""]
    names = list(RUN_FILES) + [f"{fold}{name}" for fold in folds for name in FOLD_FILES]
    if run.info.backbone == RANDOM_DIR:
        names += sorted(path.relative_to(folder).as_posix() for path in (folder / RANDOM_DIR).rglob("*")
                        if path.is_file())
    return [name for name in names if (folder / name).is_file()]


def _write_public(source: Path, target: Path) -> None:
    """Copy one shared file, its local paths made public (the run's description, metrics,
    config and adapter configs; weights and logs as they are)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.name == RUN_FILE:
        atomic_write_json(target, public_info(RunInfo.from_dict(json.loads(source.read_text()))).to_dict())
    elif source.name in (METRICS_FILE, ADAPTER_CONFIG):
        value = json.loads(source.read_text())
        if "dataset" in value:
            value["dataset"] = Path(value["dataset"]).name
        if "backbone" in value:  # relative references point inside the run (a random backbone) and travel
            value["backbone"] = public_name(value["backbone"]) if Path(value["backbone"]).is_absolute() \
                else value["backbone"]
        atomic_write_json(target, value)
    elif source.name == CONFIG_FILE:
        value = yaml.safe_load(source.read_text())
        value["data"]["dataset"] = Path(value["data"]["dataset"]).name
        if value.get("model", {}).get("checkpoint"):
            value["model"]["checkpoint"] = public_name(value["model"]["checkpoint"])
        atomic_write_text(target, yaml.safe_dump(value, sort_keys=False))
    else:
        shutil.copy2(source, target)


def stage_run(run_dir: str | Path, out: Path, repo_id: str,
              message: Callable[[str], None] = lambda text: None) -> list[str]:
    """Write into the new or empty folder ``out`` exactly what pushing the run to ``repo_id``
    uploads: its shared files, local paths made public, and a model card for that id.
    ``message`` hears a warning when the data set or the backbone is a local one, which does not
    travel. Returns the files, card first."""
    if not is_hub_id(repo_id):
        raise SoftmoaError(f"{repo_id}: not a hub repo id; give one as owner/name, e.g. your-name/fsdd-soft")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SoftmoaError(f"{out}: not an empty folder; give a new or empty folder to stage the run in")
    run = Run.open(run_dir)
    names, backbone, dataset = shared_files(run), run.info.backbone, run.info.dataset
    if is_local_path(backbone):
        message(f"the backbone is a local folder ({backbone}): it goes as {public_name(backbone)!r}, and whoever "
                f"loads {repo_id} needs a copy of it, as its model card says")
    if is_local_dataset(dataset):
        message(f"the data set is local ({dataset}): it goes by its name, {Path(dataset).name!r}; evaluating the "
                "pushed run needs `dataset` given as the path of a copy")
    card = model_card(run_dir, repo_id)
    for name in names:
        _write_public(run.path / name, out / name)
    atomic_write_text(out / CARD_FILE, card)
    return [CARD_FILE, *names]


def push_run(run_dir: str | Path, repo_id: str, private: bool = False,
             message: Callable[[str], None] = lambda text: None) -> tuple[str, list[str]]:
    """Upload a finished run to hub repo ``repo_id`` (created if needed, ``private`` then) as
    one commit of what ``stage_run`` writes. Returns the repo's URL and the files uploaded."""
    with tempfile.TemporaryDirectory(prefix="softmoa-push-") as staged:
        files = stage_run(run_dir, Path(staged), repo_id, message)
        url = upload(Path(staged), repo_id, private, f"softmoa run {Run.open(run_dir).name}")
    return url, files
