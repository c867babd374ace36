"""Named registries: the extension points (PETL methods, data sets, ...).

Built-ins register in code; outside packages add entries through an entry-point group
whose entry points name a callable that registers them. Built-ins win name collisions.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown_name(kind: str, name: object, choices: Iterable[str], allowed: str = "choose one of",
                 show_name: bool = True) -> str:
    """The one-line error for a ``name`` that is not among ``choices``, naming the closest choice
    when it is a likely typo: ``unknown method 'sofy'; did you mean 'soft'? (choose one of:
    linear, ...)``. ``allowed`` words the list; ``show_name`` False leaves the name out (the
    caller's message shows it already)."""
    choices = list(choices)
    what = f"unknown {kind} {name!r}" if show_name else f"unknown {kind}"
    close = difflib.get_close_matches(name, choices, n=1) if isinstance(name, str) else []
    if close:
        return f"{what}; did you mean {close[0]!r}? ({allowed}: {', '.join(choices)})"
    return f"{what}; {allowed}: {', '.join(choices)}"


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str, item: T, *, builtin: bool = True) -> T:
        if name in self._items:
            if builtin:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            warnings.warn(f"plugin {self.kind} {name!r} ignored: the name is taken", stacklevel=2)
            return self._items[name]
        self._items[name] = item
        return item

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            try:
                point.load()(self)
            except Exception as error:  # a broken plugin must not break the tool
                warnings.warn(f"cannot load {self.kind} plugin {point.name!r} ({point.value}): {error}", stacklevel=2)

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._items:
            from .errors import SoftmoaError

            raise SoftmoaError(unknown_name(self.kind, name, self.names()))
        return self._items[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items
