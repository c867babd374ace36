"""Glue to the data package: a data set's prepared feature cache as a FeatureTable,
preparing the cache first when it is missing.

Contract with ``engine/data``: ``cache.open_cache(name, max_length=None, prepare=True,
message=print)`` returns the cache of a registered data set (or a user's folder / manifest),
preparing it when missing, with attributes ``features [n, frames, bins]`` (float16 memory
map), ``labels [n]``, ``label_names``, ``split [n]``, ``fold [n]`` and ``feature_config``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import DataConfig
from ..errors import SoftmoaError
from .data import FeatureTable


def open_table(data: DataConfig, message: Callable[[str], None]) -> FeatureTable:
    try:
        from ..data.cache import open_cache
    except ImportError:
        raise SoftmoaError("the data package (engine/data/cache.py) is not installed in this build: "
                           "data sets cannot be prepared yet") from None
    cache = open_cache(data.dataset, max_length=data.max_length, prepare=True, message=message,
                       max_bad=data.max_bad)
    return FeatureTable(data.dataset, cache.features, np.asarray(cache.labels), list(cache.label_names),
                        np.asarray(cache.split, dtype=object), np.asarray(cache.fold), cache.feature_config,
                        cache.windows, cache.extra)
