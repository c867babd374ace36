"""The catalogue of studies: which method field each sweeps, over which values, from which defaults."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SoftmoaError
from ..registry import unknown_name


def _choice(*options: str) -> Callable[[str], str]:
    """A parser accepting only ``options`` (ValueError otherwise)."""
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text
    return parse


@dataclass(frozen=True)
class Study:
    """One swept method field. ``defaults``: method fields every point starts from (the preset's
    method is replaced when ``name`` differs; ``--set method.KEY=...`` overrides them)."""

    name: str
    description: str
    key: str  # the swept method field; "name" sweeps methods at a comparable budget
    values: tuple
    parse: Callable[[str], Any]
    defaults: dict


METHOD_NAMES = ("linear", "adapter", "lora", "dense", "soft", "full")

STUDIES: dict[str, Study] = {s.name: s for s in [
    Study("slots", "Soft-MoA slots per expert", "slots", (1, 2, 4, 8), int,
          {"name": "soft", "experts": 8}),
    Study("experts", "Soft-MoA experts", "experts", (2, 4, 8, 16), int, {"name": "soft", "slots": 1}),
    Study("reduction-rate", "Soft-MoA bottleneck reduction rate", "reduction_rate", (32, 64, 128, 256), float,
          {"name": "soft"}),
    Study("location", "Soft-MoA location (Pfeiffer)", "location", ("mhsa", "ffn"), _choice("mhsa", "ffn"),
          {"name": "soft", "adapter_config": "pfeiffer"}),
    Study("adapter-config", "Soft-MoA at one location (Pfeiffer) or both (Houlsby)", "adapter_config",
          ("pfeiffer", "houlsby"), _choice("pfeiffer", "houlsby"), {"name": "soft"}),
    Study("init", "Soft-MoA init: zero up-projection or the research code's N(0, 0.02)", "init",
          ("zero_up", "research"), _choice("zero_up", "research"), {"name": "soft"}),
    Study("methods", "PETL methods at the Soft-MoA's budget", "name", METHOD_NAMES, _choice(*METHOD_NAMES),
          {"name": "soft"}),
]}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise SoftmoaError(unknown_name("study", name, STUDIES))
    return STUDIES[name]


def parse_values(study: Study, text: str | None) -> tuple | None:
    """``"1,2,4"`` -> ``(1, 2, 4)`` with the study's type (None for no text); a bad value is a
    one-line error. Whole floats become ints, so ``64`` and ``64.0`` name the same point."""
    if text is None:
        return None
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = study.parse(item)
        except ValueError:
            raise SoftmoaError(f"`values` {text}: {item!r} is not a value of study {study.name!r} "
                               f"(default grid: {', '.join(map(str, study.values))})") from None
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)
        values.append(value)
    if len(set(values)) != len(values):
        raise SoftmoaError(f"`values` {text}: a value is listed twice")
    return tuple(values)
