"""Where data lives: ``SOFTMOA_HOME`` (default ``~/.softmoa``).

Layout::

    $SOFTMOA_HOME/data/<name>/          an installed data set (``softmoa download``)
    $SOFTMOA_HOME/downloads/            archives being downloaded (``*.part`` resume)
    $SOFTMOA_HOME/cache/<name>/<key>/   prepared feature caches (``softmoa prepare``)
    $SOFTMOA_HOME/checkpoints/<name>/   checkpoints installed from a local copy

Every function takes an explicit ``home`` that overrides the environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "SOFTMOA_HOME"
DEFAULT_HOME = "~/.softmoa"


def softmoa_home(home: str | Path | None = None) -> Path:
    """``home`` if given, else ``$SOFTMOA_HOME``, else ``~/.softmoa`` (user-expanded, absolute)."""
    chosen = home if home is not None else os.environ.get(ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().absolute()


def data_dir(name: str, home: str | Path | None = None) -> Path:
    """Folder of the installed data set ``name``."""
    return softmoa_home(home) / "data" / name


def downloads_dir(home: str | Path | None = None) -> Path:
    return softmoa_home(home) / "downloads"


def cache_dir(name: str, home: str | Path | None = None) -> Path:
    """Parent folder of the feature caches of ``name`` (one sub-folder per settings and sources)."""
    return softmoa_home(home) / "cache" / name


def checkpoints_dir(home: str | Path | None = None) -> Path:
    return softmoa_home(home) / "checkpoints"
