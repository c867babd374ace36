"""Front ends of the speech backbones, as pure functions of a mono 16 kHz clip ``[samples]``.

Each equals its transformers feature extractor on the same audio (``tests/test_whisper.py``,
``tests/test_wav2vec2.py``). Windows are measured in frames of 10 ms, as everywhere in softmoa
(``max_length``): 160 samples per frame.

- ``whisper_log_mel``: Whisper's log-mel spectrogram (``WhisperFeatureExtractor``), and
  ``whisper_floor``, the value silence takes in it;
- ``waveform_window``: a window of samples for wav2vec2, HuBERT and WavLM
  (``Wav2Vec2FeatureExtractor``), optionally scaled to zero mean and unit variance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SAMPLE_RATE = 16_000
HOP = 160  # samples per frame of 10 ms
N_FFT = 400  # Whisper's 25 ms analysis window
VARIANCE_EPS = 1e-7  # Wav2Vec2FeatureExtractor's


def mel_filters(n_mels: int) -> torch.Tensor:
    """Whisper's mel filter bank ``[1 + N_FFT / 2, n_mels]``: Slaney mel scale and area
    normalisation, 0 to 8 kHz."""
    from torchaudio.functional import melscale_fbanks

    return melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, n_mels, SAMPLE_RATE, norm="slaney", mel_scale="slaney")


def whisper_log_mel(wave: torch.Tensor, n_mels: int = 80, frames: int | None = None) -> torch.Tensor:
    """``wave [samples]`` at 16 kHz -> Whisper's log-mels ``[frames, n_mels]``; ``frames`` None:
    one per 10 ms of the clip (``samples // 160``); more: the clip followed by silence.

    Power spectrum of 25 ms Hann windows every 10 ms (centred), mel filter bank, log10 floored
    at 1e-10, clamped to 8 below the maximum, then ``(x + 4) / 4``. Unlike the extractor, which
    pads every clip to 30 s, the clip is padded only to ``frames``: its frames equal the
    extractor's first ones, those after the clip too (the analysis sees zeros after the clip as
    the extractor's padding gives them, and silence does not move the maximum). (For a clip of
    30 s or more, which the extractor cuts at 30 s, the frames within 12.5 ms of the cut differ:
    they see the clip's own samples beyond it where the extractor reflects the cut.)
    """
    frames = wave.numel() // HOP if frames is None else frames
    tail = max(N_FFT, frames * HOP + N_FFT - wave.numel())
    padded = F.pad(wave.float(), (0, tail))  # every frame that touches the clip, with the zeros after it
    spectrum = torch.stft(padded, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)  # [201, t]
    power = spectrum.abs() ** 2
    log_mel = (mel_filters(n_mels).T @ power).clamp(min=1e-10).log10()  # [n_mels, t]
    log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
    return ((log_mel + 4.0) / 4.0)[:, :frames].T.contiguous()


def whisper_floor(log_mels: torch.Tensor) -> torch.Tensor:
    """The value silence takes in ``whisper_log_mel``'s output ``[frames, n_mels]``: 8 below
    its maximum, or the 1e-10 floor when that is higher (a scalar)."""
    return (log_mels.max() - 2.0).clamp(min=(-10.0 + 4.0) / 4.0)


def zero_mean_unit_variance(wave: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / sqrt(var + 1e-7)`` over the samples (population variance), float32."""
    x = wave.double()
    return ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + VARIANCE_EPS)).float()


def waveform_window(wave: torch.Tensor, max_length: int, normalize: bool = False) -> torch.Tensor:
    """The first window of ``max_length`` frames of a clip: ``[max_length * 160]`` samples, cut or
    zero-padded at the end. ``normalize``: the clip's samples in the window are scaled to zero
    mean and unit variance first, the padding stays zero (the extractor's ``do_normalize`` with
    ``padding="max_length"`` and an attention mask; a window without padding is the same with or
    without the mask)."""
    samples = max_length * HOP
    clip = wave[:samples].float()
    if normalize:
        clip = zero_mean_unit_variance(clip)
    return F.pad(clip, (0, samples - clip.numel()))
