"""Presets: read YAML, apply command-line overrides, validate, print.

Errors are one line that names the key, the value and what is allowed, e.g.
``presets/x.yaml: training.epocs = 3: unknown key; allowed: epochs, batch_size, ...``.
"""

from __future__ import annotations

import copy
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..engine.errors import SoftmoaError
from ..engine.petl.methods import METHODS
from .schema import RunConfig


def _presets_dir() -> Path:
    """``presets/`` of the source tree (editable installs), else the copy a wheel installs
    under ``<prefix>/share/softmoa/presets``."""
    source = Path(__file__).resolve().parents[2] / "presets"
    return source if source.is_dir() else Path(sys.prefix) / "share" / "softmoa" / "presets"


PRESETS_DIR = _presets_dir()


class ConfigError(SoftmoaError):
    """A preset or a flag that does not validate."""


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


def read_preset(path: str | Path) -> dict:
    """The mapping in a YAML preset; a syntax error names its line."""
    path = Path(path)
    try:
        value = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read preset ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where} ({getattr(error, 'problem', error)})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: a preset is a mapping with sections data, model, method, training; "
                          f"found a {type(value).__name__}")
    return value


def apply_overrides(preset: dict, overrides: dict[str, Any]) -> dict:
    """A copy of ``preset`` with dotted keys (``training.epochs``) set; ``None`` values are skipped.

    Choosing another method (``method.name``) starts that method from its own defaults: the
    preset's options of the old method do not carry over.
    """
    result = copy.deepcopy(preset)
    given = {key: value for key, value in overrides.items() if value is not None}
    new_method = given.get("method.name")
    if new_method is not None and (result.get("method") or {}).get("name") != new_method:
        result["method"] = {}
    for key, value in given.items():
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return result


def build_config(preset: dict, overrides: dict[str, Any] | None = None, source: str = "preset",
                 flags: dict[str, str] | None = None) -> RunConfig:
    """Validate ``preset`` with ``overrides`` applied. ``flags`` maps dotted keys to the
    command-line flags that set them, so that errors name the flag the user typed."""
    overrides = overrides or {}
    raw = apply_overrides(preset, overrides)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        given = {key for key, value in overrides.items() if value is not None}
        messages = [_describe(item, raw, source, given, flags or {}) for item in error.errors()]
        raise ConfigError("; ".join(messages)) from None


def load_config(preset: str | Path | None, overrides: dict[str, Any] | None = None,
                flags: dict[str, str] | None = None) -> RunConfig:
    """Preset file (or none: schema defaults) plus overrides, validated."""
    path = find_preset(preset) if preset is not None else None
    return build_config(read_preset(path) if path else {}, overrides, str(path) if path else "defaults", flags)


def dump_config(config: RunConfig) -> str:
    """The effective config as YAML, in the preset layout."""
    values = config.model_dump(mode="json")
    values["method"] = {"name": values["method"].pop("name"), **values["method"]}
    return yaml.safe_dump(values, sort_keys=False)


# ---------------------------------------------------------------- error messages

def _describe(item: dict, raw: dict, source: str, given: set[str], flags: dict[str, str]) -> str:
    loc = [str(part) for part in item["loc"]]
    if len(loc) > 1 and loc[0] == "method" and loc[1] in METHODS:
        del loc[1]  # pydantic puts the union tag into the location
    key = ".".join(loc)
    value = item.get("input")
    kind = item["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key, value = f"{key}.name", value.get("name") if isinstance(value, dict) else value
    flag = flags.get(key) if key in given else None
    origin = f"{flag} {value}" if flag else f"{source}: {key} = {value!r}"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(raw, loc[:-1])
        owner = f"method {raw['method'].get('name')!r}" if loc[:-1] == ["method"] else (".".join(loc[:-1]) or "a preset")
        return f"{origin}: unknown key for {owner}; allowed: {', '.join(allowed)}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"{origin}: unknown method; allowed: {', '.join(METHODS.names())}"
    if kind == "missing":
        return f"{source}: {key}: required, not given"
    return f"{origin}: {item['msg'][0].lower()}{item['msg'][1:]}"


def _allowed_keys(raw: dict, loc: list[str]) -> list[str]:
    """The field names of the section at ``loc`` (the method section: of the chosen method)."""
    model: type[BaseModel] = RunConfig
    for part in loc:
        if model is RunConfig and part == "method":
            model = METHODS.get(raw["method"].get("name", "soft")).config
            continue
        model = _section_type(model.model_fields[part].annotation)
    return list(model.model_fields)


def _section_type(annotation) -> type[BaseModel]:
    """The pydantic model inside ``X`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel))
    raise TypeError(f"not a config section: {annotation!r}")
