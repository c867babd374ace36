"""Log-mel frames of audio as it arrives: raw mono PCM, signed 16-bit little-endian (s16le) at
the features' rate, in chunks of any size (a sample may be split across two chunks) -> the
frames ``data.features.clip_frames`` gives for the whole recording, each as soon as its 25 ms of
samples are in. Unlike a file, a stream is not cut at ``max_seconds``.

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
from ..errors import SoftmoaError

MIN_FRAMES = 64  # rows of each mel product: well above the few rows where the BLAS rounds otherwise
PCM_SCALE = 32768.0  # s16le -> [-1, 1), as soundfile reads a 16-bit WAV


class LiveFrames:
    """Frames of a growing recording: ``feed`` its bytes, ``take`` the frames completed since the
    last take (computed then, in one product), ``end`` at the end of input. ``received``: samples
    so far; ``taken``: frames taken so far."""

    def __init__(self, features: FeatureConfig):
        if features.kind != "fbank":  # Whisper's log-mels are scaled by the whole clip's maximum: not live
            raise SoftmoaError(f"live audio is scored by models on AST's fbank features; this model takes "
                               f"{describe(features)}: score a recording with `softmoa predict FILE --timeline`")
        self.features = features
        self.shift = features.sample_rate // 100  # samples per 10 ms frame
        self.context = MIN_FRAMES - 1  # frames kept before the next new one
        self.wave = torch.zeros(self.context * self.shift)  # samples from ``start`` on
        self.start = -self.context * self.shift  # sample index of wave[0]; before 0: zeros
        self.odd = b""  # the first byte of a sample whose second byte has not come
        self.received = 0
        self.taken = 0

    @property
    def ready(self) -> int:
        """Frames whose samples are all in (taken or not)."""
        return max(0, (self.start + len(self.wave) - MIN_SAMPLES) // self.shift + 1)

    def feed(self, data: bytes) -> None:
        """The next bytes of the recording (any number; a last odd byte waits for its pair)."""
        data = self.odd + data
        whole = len(data) - len(data) % 2
        self.odd = data[whole:]
        samples = torch.from_numpy(np.frombuffer(data[:whole], dtype="<i2").astype(np.float32)) / PCM_SCALE
        self.received += len(samples)
        self.wave = torch.cat([self.wave, samples])

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
            return torch.empty(0, self.features.num_mel_bins)
        first = min(self.taken, ready - MIN_FRAMES)  # >= start's frame: ``context`` frames are kept
        offset = first * self.shift - self.start
        rows = log_mel(self.wave[offset:offset + (ready - 1 - first) * self.shift + MIN_SAMPLES], self.features)
        new = rows[self.taken - first:]
        self.taken = ready
        keep = (self.taken - self.context) * self.shift - self.start
        self.wave, self.start = self.wave[keep:], self.start + keep
        return new
