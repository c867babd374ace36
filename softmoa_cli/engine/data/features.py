"""AST input features: Kaldi log-mel filterbank, padded or cut, AudioSet-normalised.

Exactly the recipe of the AST paper and transformers' ASTFeatureExtractor: 128 mel bins,
25 ms Hanning window, 10 ms shift, htk_compat, no energy, no dither; frames padded with
zeros (before normalisation) or cut to ``max_length``; then ``(x - mean) / (2 * std)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974


@dataclass(frozen=True)
class FeatureConfig:
    """Feature settings; ``max_length`` in frames of 10 ms."""

    sample_rate: int = 16_000
    num_mel_bins: int = 128
    max_length: int = 1024
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD


def log_mel(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """``wave [samples]`` mono at ``config.sample_rate`` -> log-mel ``[frames, mel_bins]``."""
    from torchaudio.compliance import kaldi

    return kaldi.fbank(
        wave.float().unsqueeze(0),
        sample_frequency=config.sample_rate,
        htk_compat=True,
        window_type="hanning",
        num_mel_bins=config.num_mel_bins,
        use_energy=False,
        dither=0.0,
        frame_shift=10.0,
        frame_length=25.0,
    )


def pad_or_cut(frames: torch.Tensor, max_length: int) -> torch.Tensor:
    """``[frames, bins]`` -> ``[max_length, bins]``: zero-padded at the end or cut."""
    missing = max_length - frames.shape[0]
    if missing > 0:
        return torch.nn.functional.pad(frames, (0, 0, 0, missing))
    return frames[:max_length]


def normalize(frames: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """AST normalisation ``(x - mean) / (2 * std)``."""
    return (frames - config.mean) / (2 * config.std)


def features(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """``wave [samples]`` -> model input ``[max_length, mel_bins]``."""
    return normalize(pad_or_cut(log_mel(wave, config), config.max_length), config)


def windows(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Features of a clip of any length as consecutive windows: ``[n_windows, max_length, bins]``.

    A clip that fits gives one window; a longer one is cut into consecutive ``max_length``
    frame windows, the last one zero-padded.
    """
    frames = log_mel(wave, config)
    chunks = torch.split(frames, config.max_length) if frames.shape[0] else (frames,)
    return torch.stack([normalize(pad_or_cut(chunk, config.max_length), config) for chunk in chunks])
