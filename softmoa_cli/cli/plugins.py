"""Subcommands arrive through the ``softmoa.commands`` entry-point group.

Built-in commands register the same way (see pyproject.toml) and win name collisions.
An entry point names a plain function with Typer-annotated parameters; its module must
import torch inside the function body so that ``softmoa --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

GROUP = "softmoa.commands"
BUILTIN_DIST = "softmoa"


def _is_builtin(point: EntryPoint) -> bool:
    return point.dist is not None and point.dist.name == BUILTIN_DIST


def command_entry_points() -> dict[str, EntryPoint]:
    """Name -> entry point, built-ins first; an outside command never shadows a built-in."""
    points = sorted(entry_points(group=GROUP), key=lambda p: not _is_builtin(p))
    chosen: dict[str, EntryPoint] = {}
    for point in points:
        if point.name in chosen:
            if not _is_builtin(point):
                print(f"softmoa: ignoring plugin command {point.name!r} from {point.value}: the name is taken",
                      file=sys.stderr)
            continue
        chosen[point.name] = point
    return chosen


def load_commands() -> dict[str, Callable]:
    """Load every command function; a broken plugin is reported and skipped."""
    commands = {}
    for name, point in command_entry_points().items():
        try:
            commands[name] = point.load()
        except Exception as error:  # a third-party plugin must not break the tool
            print(f"softmoa: cannot load plugin command {name!r} ({point.value}): {error}", file=sys.stderr)
    return commands
