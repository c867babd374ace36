"""The data set registry: what every data set module declares, and how names are resolved.

A data set is a ``DatasetSpec``: its layout (a marker file at its root and a ``scan`` that
lists the clips from the metadata), its default ``max_length`` and where to get it. Built-ins
live in one module each (``esc50``, ``us8k``, ``speechcommands``, ``fsc``, ``fsdd``,
``fsd50k``; ``synth_sets`` defines the procedural sets) and define ``SPEC`` (or ``SPECS``). Outside packages add data sets through the ``softmoa.datasets`` entry-point
group: the entry point names a callable ``register(registry)`` that calls
``registry.register(name, spec, builtin=False)``. A path (a folder of class sub-folders or a
CSV/TSV manifest) resolves to a user's data set (``custom``).
"""

from __future__ import annotations

import functools
from importlib import import_module
from pathlib import Path

from ..errors import SoftmoaError
from ..registry import Registry
from .spec import DatasetSpec

GROUP = "softmoa.datasets"
BUILTINS = ("esc50", "us8k", "speechcommands", "fsc", "fsdd", "fsd50k", "synth_sets")
@functools.cache
def datasets() -> Registry[DatasetSpec]:
    """The data set registry; built-ins register on first use, plugins on first lookup."""
    registry: Registry[DatasetSpec] = Registry("data set", GROUP)
    for name in BUILTINS:
        module = import_module(f".{name}", __package__)
        for spec in getattr(module, "SPECS", None) or [module.SPEC]:
            registry.register(spec.name, spec)
    return registry


def resolve(name_or_path: str | Path, seed: int = 0) -> DatasetSpec:
    """A registered data set by name, or a user's folder / manifest by path (``seed``: its split)."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if name in datasets() or not path.exists():
        if not path.exists() and (path.suffix in (".csv", ".tsv") or "/" in name):
            raise SoftmoaError(f"{name}: no such folder or manifest; give a registered data set "
                               f"({', '.join(datasets().names())}), a folder of class folders or a CSV/TSV manifest")
        return datasets().get(name)  # an unknown name raises, listing the choices
    from .custom import custom_spec

    return custom_spec(path, seed)
