"""What a model's windows are cut from, as audio arrives: raw mono PCM, signed 16-bit
little-endian (s16le) at the features' rate, in chunks of any size (a sample may be split across
two chunks) -> what ``data.features.clip_frames`` gives for the whole recording, frame by frame
as soon as a frame's samples are in: AST's log-mel frames (``LiveFrames``, each once its 25 ms
are in) or a waveform model's samples (``LiveSamples``, 160 a frame of 10 ms). ``live_source``
picks by the front end. Unlike a file, a stream is not cut at ``max_seconds``. Whisper's
log-mels are not live: they are scaled by the loudest frame of the whole clip.

The fbank treats every frame on its own (no dither, no mean over the clip), so a frame's values
depend only on its samples; but the mel projection is one matrix product over all the frames at
hand, and the BLAS picks another kernel for a product of a few rows (under about 10 with MKL on
AVX-512, by measurement), rounding differently in the last bit. So each step computes at least
``MIN_FRAMES`` frames (the new ones after those before them, or after zeros at the start) and
keeps the new ones: the frames equal those of the whole file bit for bit (checked in
``tests/test_stream.py``), as long as the file has that many frames too."""

from __future__ import annotations

import numpy as np
import torch

from ..data.features import MIN_SAMPLES, FeatureConfig, describe, log_mel
from ..data.frontends import HOP
from ..errors import SoftmoaError

MIN_FRAMES = 64  # rows of each mel product: well above the few rows where the BLAS rounds otherwise
PCM_SCALE = 32768.0  # s16le -> [-1, 1), as soundfile reads a 16-bit WAV


class LivePcm:
    """A growing recording's samples: ``feed`` its bytes; ``wave`` holds the samples from sample
    index ``start`` on (a subclass lets go of those it no longer needs), ``received`` counts
    them all. A subclass gives ``ready`` (frames whose samples are all in), ``take`` (what the
    windows are cut from, for the frames ready and not taken: ``rows`` of it a frame), ``empty``
    (that of no frames) and ``end``; ``taken`` counts the frames taken."""

    rows = 1  # rows of ``take``'s tensor a frame

    def __init__(self, features: FeatureConfig, wave: torch.Tensor, start: int):
        self.features, self.wave, self.start = features, wave, start
        self.odd = b""  # the first byte of a sample whose second byte has not come
        self.received = 0
        self.taken = 0

    def feed(self, data: bytes) -> None:
        """The next bytes of the recording (any number; a last odd byte waits for its pair)."""
        data = self.odd + data
        whole = len(data) - len(data) % 2
        self.odd = data[whole:]
        samples = torch.from_numpy(np.frombuffer(data[:whole], dtype="<i2").astype(np.float32)) / PCM_SCALE
        self.received += len(samples)
        self.wave = torch.cat([self.wave, samples])


class LiveFrames(LivePcm):
    """AST's log-mel frames of a growing recording: ``take`` gives the frames completed since the
    last take ``[n, bins]`` (computed then, in one product)."""

    def __init__(self, features: FeatureConfig):
        self.shift = features.sample_rate // 100  # samples per 10 ms frame
        self.context = MIN_FRAMES - 1  # frames kept before the next new one
        # before sample 0: ``context`` frames of zeros
        super().__init__(features, torch.zeros(self.context * self.shift), -self.context * self.shift)

    def empty(self) -> torch.Tensor:
        return torch.empty(0, self.features.num_mel_bins)

    @property
    def ready(self) -> int:
        """Frames whose samples are all in (taken or not)."""
        return max(0, (self.start + len(self.wave) - MIN_SAMPLES) // self.shift + 1)

    def end(self) -> None:
        """The end of input: a recording shorter than one frame (25 ms) is zero-padded to one, as
        ``clip_frames`` pads it; a last odd byte (half a sample) is dropped."""
        if 0 < self.received < MIN_SAMPLES:
            self.wave = torch.cat([self.wave, torch.zeros(MIN_SAMPLES - self.received)])

    def take(self) -> torch.Tensor:
        """The frames ready and not taken yet, ``[n, bins]`` (n >= 0), from a product of at least
        ``MIN_FRAMES`` rows; the samples no later frame needs are let go."""
        ready = self.ready
        if ready <= self.taken:
            return self.empty()
        first = min(self.taken, ready - MIN_FRAMES)  # >= start's frame: ``context`` frames are kept
        offset = first * self.shift - self.start
        rows = log_mel(self.wave[offset:offset + (ready - 1 - first) * self.shift + MIN_SAMPLES], self.features)
        new = rows[self.taken - first:]
        self.taken = ready
        keep = (self.taken - self.context) * self.shift - self.start
        self.wave, self.start = self.wave[keep:], self.start + keep
        return new


class LiveSamples(LivePcm):
    """A waveform model's source, the samples themselves (``rows``: 160 a frame of 10 ms). While
    audio flows a frame is ready once its 160 samples are in; at the end a last partial frame
    counts too, as ``data.features.Waveform`` counts a file's frames."""

    rows = HOP

    def __init__(self, features: FeatureConfig):
        super().__init__(features, torch.empty(0), 0)
        self.ended = False

    @property
    def ready(self) -> int:
        return -(-self.received // HOP) if self.ended else self.received // HOP

    def empty(self) -> torch.Tensor:
        return torch.empty(0)

    def end(self) -> None:
        """The end of input: a last partial frame is ready; a last odd byte is dropped."""
        self.ended = True

    def take(self) -> torch.Tensor:
        """The samples of the frames ready and not taken yet, ``[n * 160]`` (fewer for a last
        partial frame); they are let go here."""
        ready = self.ready
        if ready <= self.taken:
            return self.empty()
        cut = min(ready * HOP, self.received) - self.start
        new, self.wave = self.wave[:cut], self.wave[cut:]
        self.start += cut
        self.taken = ready
        return new


def live_source(features: FeatureConfig) -> LivePcm:
    """The live source of the front end ``features.kind`` names; a one-line error for Whisper's."""
    if features.kind == "fbank":
        return LiveFrames(features)
    if features.kind == "waveform":
        return LiveSamples(features)
    raise SoftmoaError(f"live audio is scored by models on AST's fbank features or on a waveform; this model "
                       f"takes {describe(features)}, scaled by the whole clip's loudest frame: score a recording "
                       "with `softmoa predict FILE --timeline`")
