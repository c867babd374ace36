"""AST input features: Kaldi log-mel filterbank, padded or cut, AudioSet-normalised.

Exactly the recipe of the AST paper and transformers' ASTFeatureExtractor: 128 mel bins,
25 ms Hanning window, 10 ms shift, htk_compat, no energy, no dither; frames padded with
zeros (before normalisation) or cut to ``max_length``; then ``(x - mean) / (2 * std)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974


MAX_SECONDS = 600.0  # each clip is kept (and scored) up to its first 10 minutes unless a run says otherwise


@dataclass(frozen=True)
class FeatureConfig:
    """What a model scores: ``max_length``-frame windows (frames of 10 ms) of a clip's first
    ``max_seconds``. ``kind``: the front end, ``fbank`` (this module's AST log-mels), ``whisper``
    (Whisper's log-mels) or ``waveform`` (samples); ``normalize``: a waveform window scaled to
    zero mean and unit variance (``data/frontends.py``). A run stores these settings
    (``adapter.json``), so every command that scores with it (evaluate, predict, embed, the
    exports) sees the same windows."""

    sample_rate: int = 16_000
    num_mel_bins: int = 128
    max_length: int = 1024
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD
    max_seconds: float = MAX_SECONDS
    kind: str = "fbank"
    normalize: bool = False


def fbank_options(config: FeatureConfig = FeatureConfig()) -> dict:
    """The keyword arguments of ``torchaudio.compliance.kaldi.fbank`` (the AST recipe): 25 ms
    Hanning windows every 10 ms, htk_compat, no energy, no dither."""
    return {"sample_frequency": config.sample_rate, "num_mel_bins": config.num_mel_bins, "frame_length": 25.0,
            "frame_shift": 10.0, "window_type": "hanning", "htk_compat": True, "use_energy": False, "dither": 0.0}


def log_mel(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """``wave [samples]`` mono at ``config.sample_rate`` -> log-mel ``[frames, mel_bins]``."""
    from torchaudio.compliance import kaldi

    return kaldi.fbank(wave.float().unsqueeze(0), **fbank_options(config))


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


MIN_SAMPLES = 400  # one 25 ms frame at 16 kHz: shorter clips are zero-padded to it
COVER = 0.95  # a derived max_length covers this share of the clips whole
LONGEST = 1024  # a derived max_length never exceeds the AudioSet AST's input (10.24 s)


def frames_of(seconds: float, config: FeatureConfig = FeatureConfig()) -> int:
    """Frames of 10 ms the fbank gives for a clip of ``seconds`` (at least one)."""
    samples = max(round(seconds * config.sample_rate), MIN_SAMPLES)
    return 1 + (samples - MIN_SAMPLES) // (config.sample_rate // 100)


def choose_max_length(frames: np.ndarray) -> int:
    """A ``max_length`` from the clips' frame counts: the smallest multiple of 10 frames that
    holds ``COVER`` of the clips whole, at least 16 (one patch), at most ``LONGEST``."""
    needed = int(np.quantile(frames, COVER, method="inverted_cdf"))  # the longest of the shortest 95 %
    return int(min(max(16, -(-needed // 10) * 10), LONGEST))


def length_warning(frames: np.ndarray, max_length: int) -> str | None:
    """A warning when most clips are heavily padded (under half a window) or cut, else None."""
    padded, cut = float((frames < max_length / 2).mean()), float((frames > max_length).mean())
    if cut > 0.5:
        return (f"{cut:.0%} of the clips are longer than max_length {max_length} and are scored in several "
                "windows (training reads a random crop of each); a longer max_length may suit them better")
    if padded > 0.5:
        return (f"{padded:.0%} of the clips fill less than half of max_length {max_length} (the rest is padding); "
                f"a max_length near {choose_max_length(frames)} would train faster on the same audio")
    return None


def kept_frames(config: FeatureConfig = FeatureConfig()) -> int:
    """How many frames of 10 ms of a clip are kept: those of its first ``max_seconds`` (at least one)."""
    return max(1, round(config.max_seconds * 100))


def clip_frames(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Log-mel of a clip's first ``max_seconds``, ``[frames, bins]`` (at most ``kept_frames``).
    The audio is cut to the samples of those frames first (the fbank works frame by frame, so
    they are the frames of the whole clip); a clip shorter than one frame (25 ms) is
    zero-padded to one frame, so every readable clip gives at least one frame."""
    hop = config.sample_rate // 100
    wave = wave[:MIN_SAMPLES + (kept_frames(config) - 1) * hop]
    if wave.numel() < MIN_SAMPLES:
        wave = torch.nn.functional.pad(wave, (0, MIN_SAMPLES - wave.numel()))
    return log_mel(wave, config)


def frame_count(samples: int, config: FeatureConfig = FeatureConfig()) -> int:
    """Frames ``clip_frames`` gives for a clip of ``samples`` samples, without computing them."""
    whole = 1 + (max(samples, MIN_SAMPLES) - MIN_SAMPLES) // (config.sample_rate // 100)
    return min(whole, kept_frames(config))


def window_starts(frames: int, max_length: int) -> list[int]:
    """The window rule: where the ``max_length``-frame windows of a ``frames``-frame clip start.

    A clip that fits gives one window (zero-padded at the end). A longer clip is cut into
    consecutive windows and its last window is aligned to the clip's end (overlapping the one
    before it), so no window of a long clip holds padding and every frame is seen. A clip's
    scores are the mean of its windows' probabilities (see ``scoring/evaluation.py``).
    """
    if frames <= max_length:
        return [0]
    starts = list(range(0, frames - max_length, max_length))
    return starts + [frames - max_length]


def windows(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """The one way a wave becomes what a model scores (the feature cache, predict, embed and
    the exports' documented recipe): the window rule over ``clip_frames`` (the clip's first
    ``max_seconds``), ``[n_windows, max_length, bins]``.

    Float16, the precision the feature cache stores, so a file scored by ``predict`` and the
    same clip read from a cache give the model identical numbers.
    """
    frames = clip_frames(wave, config)
    length = config.max_length
    chunks = [pad_or_cut(frames[start:start + length], length) for start in window_starts(frames.shape[0], length)]
    return normalize(torch.stack(chunks), config).half()
