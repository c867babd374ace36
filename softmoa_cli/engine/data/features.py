"""What a model scores: windows of a clip by the window rule, from the front end its features
name (``FeatureConfig.kind``), and the AST's own front end.

The AST features (``fbank``) are exactly the recipe of the AST paper and transformers'
ASTFeatureExtractor: 128 mel bins, 25 ms Hanning window, 10 ms shift, htk_compat, no energy,
no dither; frames padded with zeros (before normalisation) or cut to ``max_length``; then
``(x - mean) / (2 * std)``. The speech backbones' front ends (``whisper``: Whisper's log-mels,
``waveform``: 16 kHz samples) are in ``frontends.py``; ``Fbank``, ``WhisperMels`` and
``Waveform`` below cut each into windows the same way, in frames of 10 ms, so the feature
cache, predict, embed, evaluate and the exports follow from ``windows`` whatever the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SoftmoaError
from .frontends import HOP as SAMPLES_PER_FRAME
from .frontends import waveform_window, whisper_floor, whisper_log_mel

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

    @property
    def window_shape(self) -> tuple[int, ...]:
        """One window as a model takes it (and the cache stores it): log-mels ``(max_length,
        num_mel_bins)``, or ``(max_length * 160,)`` samples of a waveform."""
        if self.kind == "waveform":
            return (self.max_length * SAMPLES_PER_FRAME,)
        return (self.max_length, self.num_mel_bins)


def fbank_options(config: FeatureConfig = FeatureConfig()) -> dict:
    """The keyword arguments of ``torchaudio.compliance.kaldi.fbank`` (the AST recipe): 25 ms
    Hanning windows every 10 ms, htk_compat, no energy, no dither."""
    return {"sample_frequency": config.sample_rate, "num_mel_bins": config.num_mel_bins, "frame_length": 25.0,
            "frame_shift": 10.0, "window_type": "hanning", "htk_compat": True, "use_energy": False, "dither": 0.0}


def log_mel(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """``wave [samples]`` mono at ``config.sample_rate`` -> log-mel ``[frames, mel_bins]``."""
    from torchaudio.compliance import kaldi

    return kaldi.fbank(wave.float().unsqueeze(0), **fbank_options(config))


def pad_or_cut(frames: torch.Tensor, max_length: int, value: float = 0.0) -> torch.Tensor:
    """``[frames, bins]`` -> ``[max_length, bins]``: padded at the end with ``value``, or cut."""
    missing = max_length - frames.shape[0]
    if missing > 0:
        return torch.nn.functional.pad(frames, (0, 0, 0, missing), value=value)
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


def window_starts(frames: int, max_length: int) -> list[int]:
    """The window rule: where the ``max_length``-frame windows of a ``frames``-frame clip start.

    A clip that fits gives one window (padded at the end). A longer clip is cut into
    consecutive windows and its last window is aligned to the clip's end (overlapping the one
    before it), so no window of a long clip holds padding and every frame is seen. A clip's
    scores are the mean of its windows' probabilities (see ``scoring/evaluation.py``).
    """
    if frames <= max_length:
        return [0]
    starts = list(range(0, frames - max_length, max_length))
    return starts + [frames - max_length]


# --- the front ends: one per ``FeatureConfig.kind`` ---------------------------------------


class Fbank:
    """AST's front end: the source is the clip's Kaldi log-mels ``[frames, bins]`` (not yet
    normalised); a window is zero-padded, then normalised (the AST recipe).

    Each front end gives a clip's ``source`` (what its windows are cut from), its ``frames`` of
    10 ms from its length alone, windows ``cut`` from the source, and a ``describe`` line."""

    def describe(self, config: FeatureConfig) -> str:
        return f"Kaldi fbank log-mels, {config.num_mel_bins} bins, normalised by mean {config.mean:g}, std {config.std:g}"

    def source(self, wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
        """The audio is cut to the samples of the kept frames first (the fbank works frame by
        frame, so they are the frames of the whole clip); a clip shorter than one frame (25 ms)
        is zero-padded to one frame, so every readable clip gives at least one frame."""
        hop = config.sample_rate // 100
        wave = wave[:MIN_SAMPLES + (kept_frames(config) - 1) * hop]
        if wave.numel() < MIN_SAMPLES:
            wave = torch.nn.functional.pad(wave, (0, MIN_SAMPLES - wave.numel()))
        return log_mel(wave, config)

    def frames(self, samples: int, config: FeatureConfig) -> int:
        whole = 1 + (max(samples, MIN_SAMPLES) - MIN_SAMPLES) // (config.sample_rate // 100)
        return min(whole, kept_frames(config))

    def cut(self, source: torch.Tensor, starts: list[int], width: int, config: FeatureConfig) -> torch.Tensor:
        chunks = [pad_or_cut(source[start:start + width], config.max_length) for start in starts]
        return normalize(torch.stack(chunks), config)


class WhisperMels:
    """Whisper's front end (``frontends.whisper_log_mel``): the source is the clip's log-mels
    ``[frames, n_mels]``, followed by those of silence up to one window when the clip is
    shorter, exactly as Whisper's extractor pads (but to the window, not to 30 s). A window
    narrower than ``max_length`` (a timeline's) is padded with the value of silence."""

    def describe(self, config: FeatureConfig) -> str:
        return f"Whisper log-mels, {config.num_mel_bins} bins"

    def source(self, wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
        kept = wave[:kept_frames(config) * SAMPLES_PER_FRAME]
        return whisper_log_mel(kept, config.num_mel_bins, max(self.frames(kept.numel(), config), config.max_length))

    def frames(self, samples: int, config: FeatureConfig) -> int:
        return max(1, min(samples // SAMPLES_PER_FRAME, kept_frames(config)))

    def cut(self, source: torch.Tensor, starts: list[int], width: int, config: FeatureConfig) -> torch.Tensor:
        silence = float(whisper_floor(source))
        return torch.stack([pad_or_cut(source[start:start + width], config.max_length, silence) for start in starts])


class Waveform:
    """wav2vec2's, HuBERT's and WavLM's front end (``frontends.waveform_window``): the source
    is the clip's samples ``[samples]`` (a frame is 160 of them; a last partial frame counts);
    a window is the samples of its frames, scaled to zero mean and unit variance when
    ``normalize``, then zero-padded to ``max_length * 160`` samples."""

    def describe(self, config: FeatureConfig) -> str:
        scaled = "each window scaled to zero mean and unit variance" if config.normalize else "not normalised"
        return f"16 kHz waveform, {scaled}"

    def source(self, wave: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
        return wave[:kept_frames(config) * SAMPLES_PER_FRAME].float()

    def frames(self, samples: int, config: FeatureConfig) -> int:
        return max(1, min(-(-samples // SAMPLES_PER_FRAME), kept_frames(config)))

    def cut(self, source: torch.Tensor, starts: list[int], width: int, config: FeatureConfig) -> torch.Tensor:
        padding = (0, (config.max_length - width) * SAMPLES_PER_FRAME)
        return torch.stack([torch.nn.functional.pad(waveform_window(source[start * SAMPLES_PER_FRAME:], width,
                                                                    config.normalize), padding)
                            for start in starts])


FRONT_ENDS = {"fbank": Fbank(), "whisper": WhisperMels(), "waveform": Waveform()}


def front_end(config: FeatureConfig):
    """The front end ``config.kind`` names."""
    if config.kind not in FRONT_ENDS:
        raise SoftmoaError(f"features of kind {config.kind!r} are not known (known: {', '.join(FRONT_ENDS)})")
    return FRONT_ENDS[config.kind]


def describe(config: FeatureConfig) -> str:
    """The features in words, e.g. ``Whisper log-mels, 80 bins``."""
    return front_end(config).describe(config)


def clip_frames(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """What the windows of a clip's first ``max_seconds`` are cut from (the front end's source):
    log-mels ``[frames, bins]`` (fbank: at most ``kept_frames``; Whisper: at least one window),
    or the samples ``[samples]`` of a waveform."""
    return front_end(config).source(wave, config)


def frame_count(samples: int, config: FeatureConfig = FeatureConfig()) -> int:
    """Frames of 10 ms of a clip of ``samples`` samples the window rule sees (at least one, at
    most ``kept_frames``), without computing them."""
    return front_end(config).frames(samples, config)


def cut_windows(source: torch.Tensor, starts: list[int], width: int,
                config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """The windows of ``width`` frames (at most ``max_length``) at frames ``starts`` of a clip's
    ``clip_frames``, as the model takes them: ``[len(starts), *config.window_shape]``, float32,
    each padded to ``max_length`` frames and normalised as the front end does."""
    return front_end(config).cut(source, starts, width, config)


def windows(wave: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """The one way a wave becomes what a model scores (the feature cache, predict, embed and
    the exports' documented recipe): the window rule over the frames of the clip's first
    ``max_seconds``, ``[n_windows, *config.window_shape]``.

    Float16, the precision the feature cache stores, so a file scored by ``predict`` and the
    same clip read from a cache give the model identical numbers.
    """
    starts = window_starts(frame_count(wave.numel(), config), config.max_length)
    return cut_windows(clip_frames(wave, config), starts, config.max_length, config).half()
