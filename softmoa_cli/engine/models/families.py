"""The backbone families, the extension point for more backbones: each one registers its name,
config class, model class, how it loads a transformers folder and the ``model_type`` values of
such folders' ``config.json``. Outside packages add families through the ``softmoa.backbones``
entry-point group (a callable receiving the registry, which calls ``register_family(...,
builtin=False)``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from ..errors import CheckpointError
from ..registry import Registry
from .ast import AST, ASTConfig
from .backbone import Backbone, BackboneConfig
from .hf_ast import load_hf_ast
from .hf_wav2vec2 import load_hf_waveform
from .hf_whisper import load_hf_whisper
from .wav2vec2 import HuBERT, HubertConfig, Wav2Vec2, Wav2Vec2Config, WavLM, WavLMConfig
from .whisper import Whisper, WhisperConfig

HFLoader = Callable[[dict, dict[str, torch.Tensor], str], tuple[Backbone, bool]]
"""``(config.json as a dict, tensors by name, source) -> (model with the weights, has a head)``."""


@dataclass(frozen=True)
class Family:
    config: type[BackboneConfig]
    model: type[Backbone]
    load_hf: HFLoader
    model_types: tuple[str, ...]


FAMILIES: Registry[Family] = Registry("backbone family", "softmoa.backbones")


def register_family(name: str, family: Family, *, builtin: bool = True) -> Family:
    """Register ``family`` under ``name``, which must be its model class's ``family``."""
    if family.model.family != name:
        raise ValueError(f"backbone family {name!r}: {family.model.__name__}.family is {family.model.family!r}")
    return FAMILIES.register(name, family, builtin=builtin)


register_family("ast", Family(ASTConfig, AST, load_hf_ast, ("audio-spectrogram-transformer",)))
register_family("whisper", Family(WhisperConfig, Whisper, load_hf_whisper, ("whisper",)))
register_family("wav2vec2", Family(Wav2Vec2Config, Wav2Vec2, partial(load_hf_waveform, "wav2vec2"), ("wav2vec2",)))
register_family("hubert", Family(HubertConfig, HuBERT, partial(load_hf_waveform, "hubert"), ("hubert",)))
register_family("wavlm", Family(WavLMConfig, WavLM, partial(load_hf_waveform, "wavlm"), ("wavlm",)))


def family_for_model_type(model_type: object, source: str) -> Family:
    """The family that loads transformers folders of ``model_type``; else a one-line CheckpointError."""
    known = {t: FAMILIES.get(name) for name in FAMILIES for t in FAMILIES.get(name).model_types}
    if model_type not in known:
        raise CheckpointError(f"{source}: model_type {model_type!r} is not a backbone this tool knows "
                              f"(supported: {', '.join(known)})")
    return known[model_type]


def build_backbone(config: BackboneConfig) -> Backbone:
    """A randomly initialised backbone of ``config``'s family."""
    for name in FAMILIES:
        if type(config) is FAMILIES.get(name).config:
            return FAMILIES.get(name).model(config)
    raise TypeError(f"no backbone family has the config class {type(config).__name__}")
