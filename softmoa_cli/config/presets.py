"""Preset files: the project's recipes in ``presets/``, found by name or path.

A preset is a run config in YAML (see ``engine/config.py`` for the schema and validation).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..engine.config import ConfigError, RunConfig, build_config, read_preset


def _presets_dir() -> Path:
    """``presets/`` of the source tree (editable installs), else the copy a wheel installs
    under ``<prefix>/share/softmoa/presets``."""
    source = Path(__file__).resolve().parents[2] / "presets"
    return source if source.is_dir() else Path(sys.prefix) / "share" / "softmoa" / "presets"


PRESETS_DIR = _presets_dir()

def find_preset(name_or_path: str | Path) -> Path:
    """A preset file: an existing path, or a name (``fsdd-cpu``) in the project's presets folder."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    named = PRESETS_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
    raise ConfigError(f"preset {str(name_or_path)!r} not found: give a YAML file or one of: {known}")


def default_preset(dataset: str) -> Path | None:
    """The project's preset named after a data set (``<name>.yaml``, else ``<name>-cpu.yaml``), if any."""
    return next((path for path in (PRESETS_DIR / f"{dataset}.yaml", PRESETS_DIR / f"{dataset}-cpu.yaml")
                 if path.is_file()), None)


def load_config(preset: str | Path | None, overrides: dict[str, Any] | None = None,
                flags: dict[str, str] | None = None) -> RunConfig:
    """Preset file (or none: schema defaults) plus overrides, validated."""
    path = find_preset(preset) if preset is not None else None
    return build_config(read_preset(path) if path else {}, overrides, str(path) if path else "defaults", flags)
