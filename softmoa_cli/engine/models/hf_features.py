"""A transformers folder's ``preprocessor_config.json`` -> our front-end settings: the fields of
``data.features.FeatureConfig`` (``kind``, ``sample_rate``, ``num_mel_bins``, ``max_length`` in
frames of 10 ms, ``normalize``, and AST's ``mean`` and ``std``), so that
``FeatureConfig(**settings)`` describes the input the checkpoint was trained on.

- ``ASTFeatureExtractor`` -> ``fbank`` (Kaldi log-mels, normalised by ``mean`` and ``std``; an
  extractor without ``do_normalize`` gets mean 0 and std 0.5, the identity of that rule);
- ``WhisperFeatureExtractor`` -> ``whisper`` (``max_length``: its 30 s chunk in frames);
- ``Wav2Vec2FeatureExtractor`` -> ``waveform`` (``normalize``: its ``do_normalize``; no
  ``max_length``, the extractor sets none).

A folder without one takes its family's extractor with that extractor's defaults
(``default_features``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data.features import AUDIOSET_MEAN, AUDIOSET_STD
from ..errors import CheckpointError

PREPROCESSOR = "preprocessor_config.json"
SAMPLE_RATE = 16_000
HOP = 160  # our frames of 10 ms


def _fbank(config: dict) -> dict:
    normalise = config.get("do_normalize", True)
    return {"kind": "fbank", "num_mel_bins": config.get("num_mel_bins", 128), "max_length": config.get("max_length", 1024),
            "mean": config.get("mean", AUDIOSET_MEAN) if normalise else 0.0,
            "std": config.get("std", AUDIOSET_STD) if normalise else 0.5}


def _whisper(config: dict) -> dict:
    return {"kind": "whisper", "num_mel_bins": config.get("feature_size", 80),
            "max_length": config.get("chunk_length", 30) * SAMPLE_RATE // HOP}


def _waveform(config: dict) -> dict:
    return {"kind": "waveform", "normalize": bool(config.get("do_normalize", True))}


EXTRACTORS = {"ASTFeatureExtractor": _fbank, "WhisperFeatureExtractor": _whisper, "Wav2Vec2FeatureExtractor": _waveform}
KIND_EXTRACTORS = {"fbank": "ASTFeatureExtractor", "whisper": "WhisperFeatureExtractor",
                   "waveform": "Wav2Vec2FeatureExtractor"}


def default_features(kind: str, config: dict) -> dict:
    """The front-end settings of a backbone of front end ``kind`` (``Backbone.front_end``) whose
    folder has no preprocessor config: its extractor's defaults, with the mel bins its model
    config (``config``, a ``config.json`` or our config as a dict) names."""
    bins = config.get("num_mel_bins")
    fields = {} if bins is None else {"num_mel_bins": bins, "feature_size": bins}
    return {"sample_rate": SAMPLE_RATE} | EXTRACTORS[KIND_EXTRACTORS[kind]](fields)


def features_of(directory: Path) -> dict | None:
    """The front-end settings of ``directory``'s ``preprocessor_config.json``; None without one.
    An unknown extractor, a rate other than 16 kHz or an unreadable file: a CheckpointError."""
    path = directory / PREPROCESSOR
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable preprocessor config ({error})") from None
    kind = config.get("feature_extractor_type")
    if kind not in EXTRACTORS:
        raise CheckpointError(f"{path}: feature_extractor_type {kind!r} is not a front end this tool knows "
                              f"(supported: {', '.join(EXTRACTORS)})")
    for key, ours in (("sampling_rate", SAMPLE_RATE), ("hop_length", HOP)):
        if config.get(key, ours) != ours:
            raise CheckpointError(f"{path}: {key} {config[key]} is not supported (only {ours}: 16 kHz audio, "
                                  "frames of 10 ms)")
    return {"sample_rate": SAMPLE_RATE} | EXTRACTORS[kind](config)
