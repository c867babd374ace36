"""What of a run may leave the machine that trained it: its paths by their last part.

A run records where its data set and backbone came from and the command that trained it; on
this machine those are paths (``/home/me/birds.csv``). What travels (``softmoa push``, an
export) names them by their last part and marks the data set and backbone that stayed home
(``run.json``: ``dataset_local``, ``backbone_local``), so no user's folder layout is published.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from ..data.registry import datasets
from ..hub import is_hub_id
from .folder import RunInfo


def is_local_path(reference: str) -> bool:
    """Whether a recorded reference is a path of this machine: absolute, ``~`` or ``.``-relative,
    or with a folder in it that is no hub id (or that exists here, as a local folder wins over a
    hub id of the same name). ``embedded``, ``backbone`` and single words are not."""
    if reference.startswith(("/", ".", "~")):
        return True
    return "/" in reference and (Path(reference).exists() or not is_hub_id(reference))


def is_local_dataset(name: str) -> bool:
    """A data set given as a folder or manifest of this machine (not a registered name)."""
    return name not in datasets()


def public_name(reference: str) -> str:
    """A recorded reference as it may travel: a local path by its last part (``/home/me/birds.csv``
    -> ``birds.csv``), anything else as it is."""
    return Path(reference).name if is_local_path(reference) else reference


def public_command(command: str | None) -> str | None:
    """The recorded command with every local path (data set, preset, output folder, backbone)
    reduced to its last part."""
    if command is None:
        return None
    return shlex.join(public_name(word) if not word.startswith("-") else word for word in shlex.split(command))


def public_info(info: RunInfo) -> RunInfo:
    """A run's description as it travels: its local data set and backbone by their names, marked
    local, and the paths of its command reduced."""
    return replace(info, dataset=Path(info.dataset).name, backbone=public_name(info.backbone),
                   command=public_command(info.command), dataset_local=is_local_dataset(info.dataset),
                   backbone_local=is_local_path(info.backbone))
