"""The command-line options of the PETL methods, read from their config models: each field of a
registered method's config (built-in or a plugin's) is a flag of ``finetune``, with the field's
type, description and default. A method's options are declared once, in its config."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

PANEL = "Method options"
PARAMETER = "method_options"  # a command taking this parameter gets every method's options


def _choices(annotation: Any) -> tuple[str, ...] | None:
    if typing.get_origin(annotation) is Literal:
        return tuple(str(choice) for choice in typing.get_args(annotation))
    return None


def _option_type(annotation: Any) -> tuple[Any, str, tuple[str, ...] | None] | None:
    """``(python type for Typer, metavar, choices)`` of a config field's annotation; None for a
    type the command line cannot carry (a nested model: ``--set`` sets it)."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(arguments) == 1:
        annotation = arguments[0]
    if annotation is bool:
        return bool, "", None
    if annotation in (int, float):
        return annotation, "N" if annotation is int else "X", None
    if annotation is str or _choices(annotation):
        return str, "NAME", _choices(annotation)
    if typing.get_origin(annotation) in (tuple, list):
        inner = typing.get_args(annotation)[0]
        if inner is str or _choices(inner):
            return list[str], "NAME", _choices(inner)
    return None


def method_fields() -> dict[str, tuple[Any, list[str]]]:
    """Each option field of the registered methods (``name`` aside): its first declaration
    (pydantic ``FieldInfo``) and the methods that have it, in registration order."""
    from ..engine.petl.methods import METHODS

    fields: dict[str, tuple[Any, list[str]]] = {}
    for method in METHODS.names():
        for name, info in METHODS.get(method).config.model_fields.items():
            if name != "name":
                fields.setdefault(name, (info, []))[1].append(method)
    return fields


def _help(name: str, info: Any, methods: list[str], choices: tuple[str, ...] | None, plural: bool) -> str:
    from ..engine.petl.methods import METHODS

    text = (info.description or name.replace("_", " ")).rstrip(".")
    if "_" not in text.split(" ")[0].split(":")[0]:
        text = text[:1].upper() + text[1:]
    if choices:
        text += f"; {'any of' if plural else 'one of'} {', '.join(choices)}"
    if plural:
        text += ", repeatable"
    defaults = {METHODS.get(m).config.model_fields[name].default for m in methods}
    default = next(iter(defaults)) if len(defaults) == 1 else None
    said = "" if default is None or isinstance(default, tuple) else f"; default {str(default).lower() if isinstance(default, bool) else default}"
    return f"{text} ({', '.join(methods)}{said})."


def method_parameters(taken: set[str]) -> list[inspect.Parameter]:
    """One keyword parameter per method option field (``Annotated`` for Typer, default None), but
    those whose name a command's own parameter ``taken`` already has (``--set method.X`` sets them)."""
    parameters = []
    for name, (info, methods) in method_fields().items():
        carried = _option_type(info.annotation)
        if carried is None or name in taken:
            continue
        kind, metavar, choices = carried
        flag = f"--{name.replace('_', '-')}"
        declarations = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        option = typer.Option(*declarations, metavar=metavar, show_default=False, rich_help_panel=PANEL,
                              help=_help(name, info, methods, choices, kind == list[str]))
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=Annotated[kind | None, option]))
    return parameters


def with_method_options(function: Callable) -> Callable:
    """``function`` (which takes ``method_options: dict``) with one flag per method option field
    instead, collected into that dict (the flags given, by field name) when called."""
    signature = inspect.signature(function, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != PARAMETER]
    added = method_parameters({p.name for p in own})
    names = {p.name for p in added}

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in names if name in kwargs}
        return function(*args, **kwargs, **{PARAMETER: {k: v for k, v in given.items() if v not in (None, [])}})

    at = next((i for i, p in enumerate(own) if p.kind is inspect.Parameter.VAR_KEYWORD), len(own))
    parameters = own[:at] + added + own[at:]
    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
