"""Reading audio files robustly: any rate, bit depth and channel count, via soundfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import AudioError

SAMPLE_RATE = 16_000


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a file as float32 samples in [-1, 1].

    Returns ``(wave [channels, samples], sample_rate_hz)``. Raises AudioError (naming the
    file and the reason) for a missing, unreadable, empty or non-finite file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found; check the path")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes); re-export or remove it")
    return _decode(str(path), path)


def read_audio_bytes(data: bytes, name: str = "<stdin>") -> tuple[torch.Tensor, int]:
    """``read_audio`` of a whole file's bytes (standard input: ``softmoa predict -``); errors
    name the source ``name``."""
    import io

    if not data:
        raise AudioError(name, "empty input (0 bytes); pipe a WAV or FLAC file")
    return _decode(io.BytesIO(data), name)


def _decode(source, name) -> tuple[torch.Tensor, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types; all mean "not audio"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        reason = reason.replace(f"Error opening {source!r}: ", "").replace(repr(source), str(name))
        raise AudioError(name, f"not a readable audio file ({reason}); use WAV, FLAC or OGG") from error
    if data.shape[0] == 0:
        raise AudioError(name, "audio has zero samples; re-export or remove it")
    if not np.isfinite(data).all():
        raise AudioError(name, "audio contains NaN or infinite samples; re-export or remove it")
    shortfall = _wav_shortfall(source)
    if shortfall is not None:
        declared, present = shortfall
        held = data.shape[0] / rate
        raise AudioError(name, f"truncated: its header declares {held * declared / max(present, 1):.2f} s of audio "
                               f"but the file holds {held:.2f} s (its end is missing); re-export or remove it")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _wav_shortfall(source) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of the data chunk of a RIFF/WAVE file cut short (a copy that
    stopped early: soundfile reads what is there without a word), else None. A streamed WAV that
    declares no length (0 or 0xFFFFFFFF) is not cut short."""
    import io

    handle = open(source, "rb") if isinstance(source, str) else source
    try:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        head = handle.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk = handle.read(8)
            length = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                present = size - offset - 8
                return (length, present) if 0 < length < 0xFFFFFFFF and present < length else None
            offset += 8 + length + (length & 1)  # chunks are padded to even sizes
        return None
    finally:
        if isinstance(source, str):
            handle.close()


def to_mono_16k(wave: torch.Tensor, rate: int, target_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Mix ``wave [channels, samples]`` (or ``[samples]``) to mono and resample: ``[samples']``."""
    import torchaudio.functional as AF

    mono = wave.mean(dim=0) if wave.dim() == 2 else wave
    if rate != target_rate:
        mono = AF.resample(mono, rate, target_rate)
    return mono


def load_mono_16k(path: str | Path, target_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read a file and return its mono waveform at ``target_rate``: ``[samples]`` float32."""
    wave, rate = read_audio(path)
    return to_mono_16k(wave, rate, target_rate)


def clip_seconds(path: str | Path) -> float | None:
    """A file's duration from its header (no decoding), or None when it cannot be read."""
    import soundfile as sf

    try:
        return sf.info(str(path)).duration
    except Exception:  # unreadable files are reported when the cache is built
        return None
