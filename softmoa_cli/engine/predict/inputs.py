"""What ``predict`` reads: its inputs (files, folders, ``-`` for standard input) as a list of
sources, each read to a mono waveform and cut into windows, or the error that keeps that one
file from being scored while the others go on."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.audio import load_mono_16k, read_audio_bytes, to_mono_16k
from ..data.features import FeatureConfig, clip_frames, frame_count, windows
from ..errors import AudioError
from .timeline import timeline_windows

STDIN = "-"  # the argument that reads one file from standard input
STDIN_NAME = "<stdin>"  # its name in the output


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """The files to score, in order: ``-`` kept (standard input), a folder replaced by every
    audio file under it (recursively, sorted by path), anything else kept as given (a missing
    file is reported when it is read)."""
    from ..data.custom import AUDIO

    files = []
    for item in inputs:
        path = Path(item)
        if str(item) == STDIN:
            files.append(STDIN)
        elif path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.suffix.lower() in AUDIO and f.is_file())
            files.extend(str(f) for f in found) if found else files.append(str(item))
        else:
            files.append(str(item))
    return files


def display_name(source: str) -> str:
    return STDIN_NAME if source == STDIN else source


def read_source(source: str, sample_rate: int = 16_000) -> torch.Tensor:
    """One input's mono waveform at ``sample_rate``: a file, or standard input for ``-``."""
    if source == STDIN:
        wave, rate = read_audio_bytes(sys.stdin.buffer.read(), STDIN_NAME)
        return to_mono_16k(wave, rate, sample_rate)
    if Path(source).is_dir():
        from ..data.custom import AUDIO

        raise AudioError(source, f"a folder with no audio files under it ({', '.join(AUDIO)})")
    return load_mono_16k(source, sample_rate)


@dataclass
class Decoded:
    """One input after decoding: its windows ``[w, *window]`` float16 (by the window rule, the
    first ``clip_windows``, then any timeline windows at ``starts`` of its ``frames``),
    or its ``error``; ``parts`` and ``done`` fill in as the predictor's batches come back."""

    name: str
    windows: torch.Tensor | None = None
    clip_windows: int = 0
    starts: list[int] | None = None
    frames: int = 0
    error: AudioError | None = None
    parts: list = field(default_factory=list)  # [(first window, log-probabilities)] as batches come back
    done: int = 0

    @property
    def complete(self) -> bool:
        """Every window scored, or nothing to score (an error)."""
        return self.error is not None or self.done == len(self.windows)


def decode(source: str, features: FeatureConfig, span: tuple[int, int] | None) -> Decoded:
    """Read and featurise one input (in a worker thread): ``decode_wave`` of its waveform; an
    input that cannot be read, its error."""
    name = display_name(source)
    try:
        wave = read_source(source, features.sample_rate)
    except AudioError as error:
        return Decoded(name, error=error)
    return decode_wave(name, wave, features, span)


def decode_wave(name: str, wave: torch.Tensor, features: FeatureConfig, span: tuple[int, int] | None) -> Decoded:
    """A waveform ``[samples]`` at ``features.sample_rate`` cut into its windows by the window
    rule, and with ``span`` (timeline ``(window, hop)`` in frames) its timeline windows after them."""
    clip = windows(wave, features)
    if span is None:
        return Decoded(name, clip, len(clip))
    frames = frame_count(wave.numel(), features)
    extra, starts = timeline_windows(clip_frames(wave, features), frames, features, span)
    return Decoded(name, torch.cat([clip, extra]), len(clip), starts, frames)
