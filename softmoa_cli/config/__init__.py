"""Preset files (``presets``): the project's recipes found by name or path. The run schema
and its validation live in ``engine/config.py``."""

from .presets import PRESETS_DIR, default_preset, find_preset, load_config

__all__ = ["PRESETS_DIR", "default_preset", "find_preset", "load_config"]
