"""Opening a data set's feature cache for training: built first when missing, or, when its audio
is not installed, the newest cache with the same settings; its bad clips judged."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SoftmoaError
from .cache import INDEX, accept_bad, cache_key, check_bad, find_cache, load_cache
from .cache_build import prepare_cache
from .features import MAX_SECONDS, FeatureConfig
from .install import installed_root
from .lengths import feature_config
from .paths import cache_dir
from .registry import resolve
from .table import FeatureTable

if TYPE_CHECKING:
    from ..config import DataConfig


def open_cache(name_or_path: str | Path, max_length: int | None = None, prepare: bool = True,
               message: Callable[[str], None] = print, *, home: Path | None = None, workers: int | None = None,
               seed: int = 0, max_bad: float | None = None, max_seconds: float = MAX_SECONDS,
               front_end: FeatureConfig = FeatureConfig()) -> FeatureTable:
    """The feature cache of a data set for training; with ``prepare`` it is built first when
    missing (``workers`` processes, default up to 4), without it a missing cache is an error.

    When the data set's audio is not installed, the newest cache with the same settings is
    used: training does not need the audio. ``max_bad``: the share of bad clips to accept
    (remembered with the cache); without it, the share accepted before, at least ``MAX_BAD``.
    ``max_seconds``: the bound on each clip kept, ``front_end``: the backbone's features (its
    window and bound set here); both are part of the cache's settings.
    """
    spec = resolve(name_or_path, seed)
    try:
        root = installed_root(spec, home)
    except SoftmoaError:
        config = replace(front_end, max_length=max_length or spec.max_length, max_seconds=max_seconds)
        fallback = None if spec.location is not None else find_cache(spec.name, config, home)
        if fallback is None:
            raise
        message(f"{spec.name}: audio not installed; using its feature cache {fallback}")
        cache = load_cache(fallback)
    else:
        if prepare:
            started = time.perf_counter()
            cache, built = prepare_cache(name_or_path, max_length=max_length, home=home, seed=seed,
                                         workers=workers or min(4, os.cpu_count() or 1), message=message,
                                         max_seconds=max_seconds, front_end=front_end)
            if built:
                message(f"prepared {spec.name}: {len(cache)} clips in {time.perf_counter() - started:.0f} s "
                        f"-> {cache.path}")
        else:
            clips = spec.scan(root)
            config = feature_config(spec, root, clips, max_length, max_seconds, front_end)
            found = cache_dir(spec.name, home) / cache_key(root, clips, config)
            if not (found / INDEX).is_file():  # a command line of prepare: its flag as typed, whoever says it
                raise SoftmoaError(f"{spec.name}: no feature cache for max_length {config.max_length}; "
                                   f"run: softmoa prepare {name_or_path} --max-length {config.max_length}")
            cache = load_cache(found)
    if max_bad is None:
        check_bad(cache)
    else:
        accept_bad(cache, max_bad)
    return cache


def open_dataset(data: DataConfig, message: Callable[[str], None] = lambda text: None,
                 front_end: FeatureConfig = FeatureConfig()) -> FeatureTable:
    """The feature table of a run's ``data`` section for a backbone's ``front_end`` (a run's
    ``features``, or what its checkpoint takes), prepared first when missing, its labels held
    for the section's task (``DataConfig.task_of``)."""
    table = open_cache(data.dataset, max_length=data.max_length, message=message, max_bad=data.max_bad,
                       max_seconds=data.max_seconds, front_end=front_end)
    return table.as_task(data.task_of(table.labels))
