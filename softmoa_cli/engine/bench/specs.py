"""Method specs, ``name`` or ``name:key=value,...``, to validated method configs."""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import SoftmoaError
from ..petl.methods import MethodConfig, method_config


def split_specs(text: str) -> list[str]:
    """``"linear,soft:experts=7,slots=1,adapter"`` -> ``["linear", "soft:experts=7,slots=1", "adapter"]``:
    a comma-separated item holding ``=`` but no ``:`` continues the previous spec's options."""
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" in item and ":" not in item:
            if not specs:
                raise SoftmoaError(f"method spec {item!r} has options but no method name (use name:key=value)")
            specs[-1] += "," + item
        else:
            specs.append(item)
    if not specs:
        raise SoftmoaError("no methods given")
    return specs


def parse_method(spec: str) -> MethodConfig:
    """``"name"`` or ``"name:key=value,key=value"`` -> the method's validated config.

    Values are validated (and converted) by the method's pydantic config; ``a+b`` gives a
    tuple, e.g. ``lora:targets=q+k+v``.
    """
    name, _, text = spec.strip().partition(":")
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key:
            raise SoftmoaError(f"method {spec!r}: expected key=value, got {item!r}")
        options[key] = tuple(value.split("+")) if "+" in value else value
    try:
        return method_config(name.strip(), **options)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in error.errors())
        raise SoftmoaError(f"method {spec!r}: {problems}") from None
    except SoftmoaError as error:
        raise SoftmoaError(f"method {spec!r}: {error}") from None
