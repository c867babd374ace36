"""The run configs of a study: its base config, and each grid point's (the swept value, the seed,
for the ``methods`` study the method at the Soft-MoA's budget)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..config import RunConfig, build_config
from ..errors import SoftmoaError
from .studies import Study


def study_config(study: Study, preset: dict, overrides: dict[str, Any] | None = None, source: str = "preset",
                 flags: dict[str, str] | None = None) -> RunConfig:
    """The study's base config: ``preset``, then the study's method defaults, then ``overrides``
    (dotted keys, as ``build_config``). Setting the swept field itself is an error."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    swept = f"method.{study.key}"
    if swept in overrides:
        flag = (flags or {}).get(swept, swept)
        raise SoftmoaError(f"{flag}: study {study.name!r} sweeps {swept}; give its values with `values`")
    defaults = {f"method.{key}": value for key, value in study.defaults.items()}
    return build_config(preset, defaults | overrides, source, flags)


def comparable_method(name: str, soft: dict, dim: int) -> dict:
    """Method ``name`` at the budget of the Soft-MoA ``soft`` (a method section) on width ``dim``.

    The experts' bottlenecks summed, W = experts x round(d / rate), set the budget: a single
    adapter of width W at the same sites, Dense-MoA with the same experts, LoRA on q and v of
    rank W x sites / 2 (4 d rank = 2 d W per block) with alpha = rank. Linear and full are as is.
    """
    from ..petl.methods import bottleneck_units, method_config

    sites = {key: soft[key] for key in ("location", "adapter_config", "init")}
    width = soft["experts"] * bottleneck_units(method_config(**soft), dim)
    if name == "soft":
        return soft
    if name == "dense":
        return {"name": "dense", "experts": soft["experts"], "reduction_rate": soft["reduction_rate"], **sites}
    if name == "adapter":
        return {"name": "adapter", "reduction_rate": dim / width, **sites}
    if name == "lora":
        rank = max(1, round(width * (2 if soft["adapter_config"] == "houlsby" else 1) / 2))
        return {"name": "lora", "rank": rank, "alpha": float(rank)}
    return {"name": name}


def point_config(base: RunConfig, study: Study, value, seed: int, dim: int) -> RunConfig:
    """The run config of one grid point: ``base`` with the swept value, seed ``base + seed``."""
    raw = base.model_dump(mode="json")
    method = raw["method"]
    raw["method"] = comparable_method(value, method, dim) if study.key == "name" else method | {study.key: value}
    raw["training"]["seed"] = base.training.seed + seed
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        raise SoftmoaError(f"study {study.name!r}, value {value}: {problem['loc'][-1]}: "
                           f"{problem['msg']}") from None


def with_max_length(config: RunConfig, max_length: int | None) -> RunConfig:
    """``config`` with ``data.max_length`` set where it is unset (the length a run derived from
    the data, which the other points of a study then share)."""
    if config.data.max_length is not None or max_length is None:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"max_length": max_length})})
