"""Run configuration: the preset schema (``schema``) and loading with overrides (``load``)."""

from .load import ConfigError, build_config, default_preset, dump_config, find_preset, load_config, read_preset
from .schema import DataConfig, ModelConfig, RandomBackbone, RunConfig, SpecAugment, TrainingConfig

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "RandomBackbone", "RunConfig", "SpecAugment",
           "TrainingConfig", "build_config", "default_preset", "dump_config", "find_preset", "load_config",
           "read_preset"]
