"""Named registries: the extension points (PETL methods, data sets, ...).

Built-ins register in code; outside packages add entries through an entry-point group
whose entry points name a callable that registers them. Built-ins win name collisions.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


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

            raise SoftmoaError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items
