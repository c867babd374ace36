"""The embedded ``synth`` data set: procedural labelled audio events, made by the tool itself.

Each class is one event family (a tone following a pitch contour, a pulse train, a vowel on a
buzzy source, a modulated noise band) with fixed class parameters. Every clip draws nuisance
variation on top: base pitch or band, rate jitter, event duration and onset, background noise
colour and SNR, gain. So a class is told by its spectro-temporal structure, not by its
average spectrum. Clip ``i`` of a class depends only on ``(seed, class name, i)``: files are
byte-identical across runs and do not depend on ``per_class`` (another numpy build may,
rarely, round a sample differently).

Layout written by ``generate``::

    root/<task>/manifest.csv                      path,label,split
    root/<task>/audio/<class>/<class>_<i>.wav     16 kHz mono PCM-16, 1 s

``generate_mixtures`` writes the multi-label variant: each clip mixes 1-3 distinct events of a
task, each with its own duration, onset and level, so they partly overlap::

    root/<task>-mixtures/manifest.csv             path,labels,split (labels: names joined by ;)
    root/<task>-mixtures/audio/mix_<i>.wav        16 kHz mono PCM-16, 1 s
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zlib
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SoftmoaError
from ..fsutil import atomic_write_bytes

SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
EVENT_SECONDS = (0.45, 0.9)  # event duration range inside the clip
SNR_DB = (0.0, 20.0)  # event RMS over background RMS
GAIN_DBFS = (-24.0, -3.0)  # peak level of the final clip
FADE_SECONDS = 0.01
SPLIT_SHARE = 0.15  # of each class, for valid and for test each; the rest is train
MIX_SIZES = (1, 2, 3)  # events per mixture clip, dealt in turn
MIX_LEVEL_DB = (-6.0, 0.0)  # each event's level in a mixture
MIX_SNR_DB = (6.0, 20.0)  # loudest event RMS over background RMS in a mixture

Event = Callable[[np.random.Generator, int], np.ndarray]


# --- spectral shaping -------------------------------------------------------------------


def _filter(x: np.ndarray, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase filter ``x [samples]`` by the magnitude response ``gain(freqs_hz)``."""
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(x) * gain(freqs), n=x.size)


def _band(centre_hz: float, octaves: float) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian band in log-frequency around ``centre_hz``, ``octaves`` wide at about -9 dB."""
    return lambda f: np.exp(-2.0 * (np.log2(np.maximum(f, 1.0) / centre_hz) / octaves) ** 2)


def _resonances(centres_hz: np.ndarray, half_width_hz: float) -> Callable[[np.ndarray], np.ndarray]:
    """Sum of resonance peaks (Lorentzian, ``half_width_hz``) at ``centres_hz``."""
    return lambda f: (1.0 / (1.0 + ((f[:, None] - centres_hz) / half_width_hz) ** 2)).sum(axis=1)


# --- nuisance draws ---------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A value drawn uniformly in log scale between ``low`` and ``high``."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _jitter(rng: np.random.Generator, rate_hz: float, spread: float = 0.15) -> float:
    """``rate_hz`` scaled by a random factor within ``1 +- spread``."""
    return rate_hz * rng.uniform(1 - spread, 1 + spread)


def _cycle(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """Position within a cycle of ``rate_hz``, random start: ``[n]`` in ``[0, 1)``."""
    return (rate_hz * np.arange(n) / SAMPLE_RATE + rng.uniform()) % 1.0


# --- event families: (rng, samples) -> [samples] ------------------------------------------


_FLAT = ((0.0, 0.0), (1.0, 0.0))


def _triangle(depth: float) -> tuple[tuple[float, float], ...]:
    """One cycle of a triangle contour swinging ``+-depth`` octaves, for vibrato and trills."""
    return ((0.0, 0.0), (0.25, depth), (0.75, -depth), (1.0, 0.0))


def _staircase(levels: tuple[float, ...], glide: float = 0.01) -> tuple[tuple[float, float], ...]:
    """Contour points holding each level (octaves) for an equal share, with short glides."""
    share = 1.0 / len(levels)
    return tuple(
        point for k, level in enumerate(levels) for point in ((k * share, level), ((k + 1) * share - glide, level))
    )


def tonal(
    rng: np.random.Generator,
    n: int,
    contour: tuple[tuple[float, float], ...],
    low_hz: float,
    high_hz: float,
    harmonics: int = 2,
    rate_hz: float | None = None,
) -> np.ndarray:
    """A harmonic tone whose pitch follows ``contour``: ``[n]`` samples.

    ``contour`` is ``(position, octaves)`` points, position in [0, 1] increasing, read once
    over the event or, with ``rate_hz``, cycled at that rate. The base pitch is drawn
    between ``low_hz`` and ``high_hz``; harmonic ``h`` has amplitude ``1/h`` and is dropped
    near Nyquist.
    """
    where = np.linspace(0.0, 1.0, n) if rate_hz is None else _cycle(rng, n, _jitter(rng, rate_hz))
    positions, octaves = zip(*contour)
    pitch = _log_uniform(rng, low_hz, high_hz) * 2.0 ** np.interp(where, positions, octaves)  # [n] Hz
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE  # [n] radians
    order = np.arange(1, harmonics + 1)[:, None]  # [h, 1]
    amplitude = np.where(order * pitch < 0.45 * SAMPLE_RATE, 1.0 / order, 0.0)  # [h, n]
    return (amplitude * np.sin(order * phase)).sum(axis=0)


def pulses(rng: np.random.Generator, n: int, rate_hz: float, width_s: float, octaves: float) -> np.ndarray:
    """Band-noise pulses of ``width_s`` seconds repeating at about ``rate_hz``: ``[n]`` samples.

    The band, ``octaves`` wide, is centred at a random frequency between 500 Hz and 4 kHz.
    """
    rate = _jitter(rng, rate_hz)
    since_onset = _cycle(rng, n, rate) / rate  # [n] seconds
    envelope = np.where(since_onset < width_s, np.sin(np.pi * since_onset / width_s) ** 2, 0.0)
    carrier = _filter(rng.standard_normal(n), _band(_log_uniform(rng, 500.0, 4000.0), octaves))
    return envelope * carrier


def vowel(rng: np.random.Generator, n: int, formants_hz: tuple[float, ...]) -> np.ndarray:
    """A buzzy voice (pitch 90-250 Hz) through vowel formants: ``[n]`` samples.

    The formants shift together by a random vocal-tract factor (+-15 %) and each by its own
    +-5 %, as between speakers.
    """
    source = tonal(rng, n, ((0.0, 0.0), (1.0, -0.1)), 90.0, 250.0, harmonics=40)
    tract = rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, len(formants_hz))
    return _filter(source, _resonances(np.asarray(formants_hz) * tract, 60.0))


def noise_band(rng: np.random.Generator, n: int, rate_hz: float, depth: float, octaves: float) -> np.ndarray:
    """Band noise (random centre 300 Hz-5 kHz) amplitude-modulated at about ``rate_hz``: ``[n]``.

    ``depth`` 1 modulates down to silence, 0 leaves a steady band.
    """
    band = _filter(rng.standard_normal(n), _band(_log_uniform(rng, 300.0, 5000.0), octaves))
    modulation = 1.0 - depth * 0.5 * (1.0 + np.cos(2 * np.pi * _cycle(rng, n, _jitter(rng, rate_hz))))
    return modulation * band


# --- classes -----------------------------------------------------------------------------

CLASSES: dict[str, dict[str, Event]] = {
    "downstream": {
        "chirp_up": partial(tonal, contour=((0.0, 0.0), (1.0, 1.5)), low_hz=200.0, high_hz=700.0),
        "chirp_down": partial(tonal, contour=((0.0, 1.5), (1.0, 0.0)), low_hz=200.0, high_hz=700.0),
        "harmonic_stack": partial(tonal, contour=_FLAT, low_hz=150.0, high_hz=500.0, harmonics=8),
        "vibrato": partial(tonal, contour=_triangle(0.1), low_hz=300.0, high_hz=1200.0, rate_hz=6.0),
        "hop_updown": partial(
            tonal, contour=_staircase((0.0, 0.33, 0.58, 1.0, 0.58, 0.33, 0.0)), low_hz=250.0, high_hz=800.0
        ),
        "two_tone": partial(tonal, contour=_staircase((0.0, 0.58)), low_hz=300.0, high_hz=1000.0, rate_hz=5.0),
        "clicks_slow": partial(pulses, rate_hz=8.0, width_s=0.003, octaves=2.0),
        "clicks_fast": partial(pulses, rate_hz=40.0, width_s=0.003, octaves=2.0),
        "noise_bursts": partial(pulses, rate_hz=3.5, width_s=0.08, octaves=6.0),
        "am_noise": partial(noise_band, rate_hz=8.0, depth=1.0, octaves=1.0),
        "vowel_a": partial(vowel, formants_hz=(730.0, 1090.0, 2440.0)),
        "vowel_i": partial(vowel, formants_hz=(270.0, 2290.0, 3010.0)),
    },
    "upstream": {
        "sweep_arch": partial(tonal, contour=((0.0, 0.0), (0.5, 1.2), (1.0, 0.0)), low_hz=200.0, high_hz=700.0),
        "sweep_valley": partial(tonal, contour=((0.0, 1.2), (0.5, 0.0), (1.0, 1.2)), low_hz=200.0, high_hz=700.0),
        "chirp_train": partial(tonal, contour=((0.0, 0.0), (1.0, 1.0)), low_hz=300.0, high_hz=900.0, rate_hz=4.0),
        "trill": partial(tonal, contour=_triangle(0.17), low_hz=300.0, high_hz=1200.0, rate_hz=12.0),
        "staircase_down": partial(tonal, contour=_staircase((1.0, 0.75, 0.5, 0.25, 0.0)), low_hz=200.0, high_hz=600.0),
        "low_buzz": partial(tonal, contour=_FLAT, low_hz=60.0, high_hz=120.0, harmonics=30),
        "rattle": partial(pulses, rate_hz=18.0, width_s=0.015, octaves=3.0),
        "am_slow": partial(noise_band, rate_hz=2.0, depth=1.0, octaves=1.0),
        "am_fast": partial(noise_band, rate_hz=25.0, depth=1.0, octaves=1.0),
        "hiss_band": partial(noise_band, rate_hz=1.0, depth=0.0, octaves=0.7),
        "vowel_u": partial(vowel, formants_hz=(300.0, 870.0, 2240.0)),
        "vowel_e": partial(vowel, formants_hz=(530.0, 1840.0, 2480.0)),
    },
}

TASKS: dict[str, list[str]] = {task: list(classes) for task, classes in CLASSES.items()}


# --- clips -------------------------------------------------------------------------------


def _fade(event: np.ndarray) -> np.ndarray:
    """``event [samples]`` with raised-cosine fades of ``FADE_SECONDS`` at both ends."""
    ramp = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, int(FADE_SECONDS * SAMPLE_RATE))) ** 2
    out = event.copy()
    out[: ramp.size] *= ramp
    out[-ramp.size :] *= ramp[::-1]
    return out


def _background(rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise for a whole clip, between white and pinkish at random: ``[CLIP_SAMPLES]``."""
    slope = rng.uniform(0.0, 0.6)
    noise = _filter(rng.standard_normal(CLIP_SAMPLES), lambda f: (np.maximum(f, 20.0) / 1000.0) ** -slope)
    return noise / np.sqrt(np.mean(noise**2))


def synthesize(event: Event, rng: np.random.Generator) -> np.ndarray:
    """One clip: ``event`` at a random onset and duration over background noise at a random SNR.

    Returns ``[CLIP_SAMPLES]`` float64 with peak at a random level in ``GAIN_DBFS``.
    """
    length = int(rng.uniform(*EVENT_SECONDS) * SAMPLE_RATE)
    onset = int(rng.integers(0, CLIP_SAMPLES - length + 1))
    sound = _fade(event(rng, length))
    clip = np.zeros(CLIP_SAMPLES)
    clip[onset : onset + length] = sound / np.sqrt(np.mean(sound**2))
    clip += _background(rng) * 10 ** (-rng.uniform(*SNR_DB) / 20)
    return clip * (10 ** (rng.uniform(*GAIN_DBFS) / 20) / np.abs(clip).max())


def clip_rng(seed: int, label: str, index: int) -> np.random.Generator:
    """The generator for clip ``index`` of class ``label``: independent of every other clip."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), index])


def split_of(index: int, per_class: int) -> str:
    """Split of clip ``index`` among ``per_class``: the first ~70 % train, then valid, then test."""
    held = max(1, round(SPLIT_SHARE * per_class))
    if index < per_class - 2 * held:
        return "train"
    return "valid" if index < per_class - held else "test"


def _wav_bytes(clip: np.ndarray) -> bytes:
    """``clip [samples]`` in [-1, 1] -> the bytes of a 16 kHz mono PCM-16 WAV file."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, clip, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    Atomic for readers but not fsynced: a clip torn by a crash no longer matches its bytes,
    so the next ``generate`` rewrites it, and skipping fsync halves the time of a first run.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_if_changed(path: Path, data: bytes, write: Callable[[Path, bytes], None] = _replace) -> None:
    """``write(path, data)`` unless ``path`` already holds exactly these bytes."""
    if not (path.is_file() and path.read_bytes() == data):
        write(path, data)


def _manifest_bytes(rows: list[tuple[str, str, str]], header: tuple[str, ...] = ("path", "label", "split")) -> bytes:
    """``(path, label, split)`` rows -> CSV bytes with ``header``."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def generate(
    root: Path,
    task: str = "downstream",
    per_class: int = 60,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    classes: dict[str, Event] | None = None,
) -> Path:
    """Write ``per_class`` clips of every class of ``task`` and their manifest under ``root/task``.

    ``classes``: the task's events (default ``CLASSES[task]``). Files already holding the right
    bytes are left untouched. ``progress(done, total)`` is called after each clip. Returns the
    path of ``manifest.csv``.
    """
    if classes is None and task not in CLASSES:
        raise SoftmoaError(f"unknown synth task {task!r}; choose one of {', '.join(CLASSES)}")
    classes = CLASSES[task] if classes is None else classes
    if per_class < 3:
        raise SoftmoaError(f"synth needs at least 3 clips per class for train/valid/test, got {per_class}")
    folder = Path(root) / task
    total = len(classes) * per_class
    rows = []
    for label, event in classes.items():
        for index in range(per_class):
            relative = f"audio/{label}/{label}_{index}.wav"
            _write_if_changed(folder / relative, _wav_bytes(synthesize(event, clip_rng(seed, label, index))))
            rows.append((relative, label, split_of(index, per_class)))
            if progress is not None:
                progress(len(rows), total)
    manifest = folder / "manifest.csv"
    _write_if_changed(manifest, _manifest_bytes(rows), atomic_write_bytes)
    return manifest


# --- mixtures (multi-label) --------------------------------------------------------------


def mixture_groups(classes: list[str], seed: int, group: int) -> list[tuple[str, ...]]:
    """The label sets of mixture group ``group``: one shuffle of ``classes`` dealt into clips of
    ``MIX_SIZES`` events in turn (the order of sizes shuffled too). Every class is in exactly one
    clip of a group, so label counts are balanced and the events of a clip are distinct."""
    rng = np.random.default_rng([seed, zlib.crc32(b"mixture-groups"), group])
    order = [classes[k] for k in rng.permutation(len(classes))]
    sizes, total = [], 0
    while total < len(order):
        size = min(MIX_SIZES[len(sizes) % len(MIX_SIZES)], len(order) - total)
        sizes.append(size)
        total += size
    sizes = [sizes[k] for k in rng.permutation(len(sizes))]
    starts = np.cumsum([0, *sizes])
    return [tuple(order[starts[k] : starts[k + 1]]) for k in range(len(sizes))]


def synthesize_mixture(events: list[Event], rng: np.random.Generator) -> np.ndarray:
    """One clip mixing ``events``, each at its own duration, onset and level (``MIX_LEVEL_DB``),
    over background noise at ``MIX_SNR_DB`` below the loudest. ``[CLIP_SAMPLES]`` float64, peak
    at a random level in ``GAIN_DBFS``."""
    clip = np.zeros(CLIP_SAMPLES)
    levels = []
    for event in events:
        length = int(rng.uniform(*EVENT_SECONDS) * SAMPLE_RATE)
        onset = int(rng.integers(0, CLIP_SAMPLES - length + 1))
        sound = _fade(event(rng, length))
        levels.append(rng.uniform(*MIX_LEVEL_DB))
        clip[onset : onset + length] += sound / np.sqrt(np.mean(sound**2)) * 10 ** (levels[-1] / 20)
    clip += _background(rng) * 10 ** ((max(levels) - rng.uniform(*MIX_SNR_DB)) / 20)
    return clip * (10 ** (rng.uniform(*GAIN_DBFS) / 20) / np.abs(clip).max())


def generate_mixtures(
    root: Path,
    task: str = "downstream",
    clips: int = 600,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``clips`` mixtures of 1-3 events of ``task`` and their manifest under ``root/<task>-mixtures``.

    Clips come in groups (``mixture_groups``); clip ``i`` depends only on ``(task, seed, i)``,
    not on ``clips``. Whole groups go to a split: the first ~70 % train, then valid, then test. Files
    already holding the right bytes are left untouched. Returns the path of ``manifest.csv``.
    """
    if task not in CLASSES:
        raise SoftmoaError(f"unknown synth task {task!r}; choose one of {', '.join(CLASSES)}")
    per_group = len(mixture_groups(TASKS[task], seed, 0))
    groups = -(-clips // per_group)
    if groups < 3:
        raise SoftmoaError(f"synth mixtures need at least {2 * per_group + 1} clips for train/valid/test, got {clips}")
    folder = Path(root) / f"{task}-mixtures"
    rows = []
    for group in range(groups):
        for position, labels in enumerate(mixture_groups(TASKS[task], seed, group)):
            index = group * per_group + position
            if index >= clips:
                break
            events = [CLASSES[task][label] for label in labels]
            rng = np.random.default_rng([seed, zlib.crc32(b"mixture"), index])
            relative = f"audio/mix_{index}.wav"
            _write_if_changed(folder / relative, _wav_bytes(synthesize_mixture(events, rng)))
            rows.append((relative, ";".join(sorted(labels)), split_of(group, groups)))
            if progress is not None:
                progress(len(rows), clips)
    manifest = folder / "manifest.csv"
    _write_if_changed(manifest, _manifest_bytes(rows, ("path", "labels", "split")), atomic_write_bytes)
    return manifest
