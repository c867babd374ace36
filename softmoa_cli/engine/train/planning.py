"""What a command asks to train: the runs of ``finetune`` (the default job is two), the config
of a resumed run, the preset an ablation study starts from and its folder, and which process
reports.

The front end resolves preset names to files and says which flags the user typed; the rules
of what follows from them live here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from ..config import ConfigError, RunConfig, build_config, read_config, read_preset
from ..petl.methods import METHODS
from ..data.registry import resolve
from ..runs.files import CONFIG_FILE, RUN_FILE



class PlannedRun(NamedTuple):
    """One fine-tuning run: its config and its folder (None: ``runs/<dataset>-<method>-<time>``)."""

    config: RunConfig
    out: Path | None


def plan_runs(preset: Path | None, overrides: dict[str, Any], flags: dict[str, str], out: Path | None,
              default_run: bool = False) -> list[PlannedRun]:
    """The runs of one ``finetune``: ``preset`` (None: the schema's defaults) with ``overrides``
    (dotted keys; ``flags`` names the flag of each, for errors) into ``out``.

    The default job (no data set or preset chosen) without a method trains two runs into
    ``out/adapter`` and ``out/<method>``: first the single adapter of the same width, then the
    preset's Soft-MoA (so the latest run is the Soft-MoA). Mixture-only options go to the
    Soft-MoA run alone.
    """
    raw, source = base_preset(preset)
    config = build_config(raw, overrides, source, flags)
    resolve(config.data.dataset)  # a mistyped data set fails here, before torch loads
    if not default_run or "method.name" in overrides:
        return [PlannedRun(config, out)]
    adapter_fields = METHODS.get("adapter").config.model_fields
    shared = {key: value for key, value in overrides.items()
              if not key.startswith("method.") or key.split(".", 1)[1] in adapter_fields}
    width = {"method.name": "adapter", "method.reduction_rate": config.method.reduction_rate}
    adapter = build_config(raw, shared | width, source, flags)
    return [PlannedRun(adapter, out and out / "adapter"), PlannedRun(config, out and out / config.method.name)]


def resume_config(run_dir: Path, given: list[str]) -> RunConfig:
    """The saved config of the run folder to continue. ``given``: the flags the user typed
    besides ``--resume``; a resumed run takes none (its config is the one it started with).
    Only an interrupted run continues: a finished one says how to train longer instead."""
    if given:
        raise ConfigError(f"`resume` takes the config saved in {run_dir}/{CONFIG_FILE}; drop {', '.join(given)}")
    if not run_dir.is_dir():
        raise ConfigError(f"`resume` {run_dir}: no such run folder")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"`resume` {run_dir}: not a run folder (no {CONFIG_FILE})")
    config = read_config(path)
    if _finished(run_dir):
        epochs = config.training.epochs
        raise ConfigError(f"`resume` {run_dir}: this run is finished ({epochs} epoch{'s' * (epochs != 1)}); to train "
                          f"longer, start a new run with `epochs` {2 * epochs}, e.g. softmoa finetune --preset {path} "
                          f"--epochs {2 * epochs} (`resume` continues interrupted runs only)")
    return config


def _finished(run_dir: Path) -> bool:
    """Whether the run's description says it finished (an unreadable one: not finished)."""
    try:
        return bool(json.loads((run_dir / RUN_FILE).read_text()).get("finished"))
    except (OSError, ValueError, AttributeError):
        return False


def base_preset(preset: Path | None, default_dataset: str | None = None) -> tuple[dict, str]:
    """The mapping a run config starts from (``preset``, or None: the schema's defaults) and its
    name for errors; ``default_dataset`` is the data set when the preset names none."""
    raw = read_preset(preset) if preset else {}
    data = raw.get("data") or {}
    if default_dataset and isinstance(data, dict) and "dataset" not in data:
        raw = raw | {"data": data | {"dataset": default_dataset}}
    return raw, str(preset) if preset else "defaults"


def study_dir(study: str, base: RunConfig) -> Path:
    """The default folder of an ablation study: ``ablations/<study>-<dataset>``."""
    return Path("ablations") / f"{study}-{Path(base.data.dataset).name}"


def is_main_process() -> bool:
    """Whether this process reports: rank 0 under ``torchrun``, or a lone process."""
    return int(os.environ.get("RANK", "0")) == 0
