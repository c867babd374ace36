"""Speech-like procedural audio: pseudo-words, for pretraining the embedded backbone.

A pseudo-word is a fixed sequence of phones (vowels and diphthongs with formant targets,
nasals, liquids and glides, fricatives, stops with closure and burst), drawn once per class
from a small inventory with syllable structure (C)(C)V(C). Each clip says its word as another
speaker would: base pitch 80-260 Hz on a rising or falling contour, vocal-tract length
(formants scaled together by 0.8-1.2), speaking rate (the event's duration), each phone's
length +-25 %, and a bandwidth cut to 4-8 kHz (as 8 kHz recordings are). So a class is told by
its phone sequence, as spoken words are, not by voice, pitch or channel.

Phones are rendered segment by segment on one continuous glottal source (``synth.tonal``),
each voiced segment through its formant resonances (``synth._resonances``), noise segments
through bands (``synth._band``), with short cross-fades between segments.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial

import numpy as np

from .synth import SAMPLE_RATE, Event, _band, _filter, _resonances, tonal

# Formant targets (F1, F2, F3) in Hz of an adult male voice.
VOWELS = {
    "a": (730, 1090, 2440), "i": (270, 2290, 3010), "u": (300, 870, 2240), "e": (530, 1840, 2480),
    "o": (570, 840, 2410), "ae": (660, 1720, 2410), "er": (490, 1350, 1690), "ih": (390, 1990, 2550),
    "uh": (520, 1190, 2390), "oo": (440, 1020, 2240),
}
DIPHTHONGS = {"ay": ("a", "i"), "aw": ("a", "u"), "ey": ("e", "i"), "ow": ("o", "u"), "oy": ("o", "i")}
SONORANTS = {  # formants, relative level
    "m": ((250, 1100, 2100), 0.35), "n": ((250, 1500, 2500), 0.35), "l": ((360, 1300, 2700), 0.6),
    "r": ((420, 1300, 1600), 0.6), "w": ((300, 610, 2200), 0.6), "y": ((270, 2100, 3000), 0.6),
}
FRICATIVES = {  # band centre Hz, octaves, relative level, voiced
    "s": (6000, 1.0, 0.5, False), "sh": (3000, 1.0, 0.5, False), "f": (4000, 3.0, 0.2, False),
    "th": (5000, 3.0, 0.15, False), "h": (1500, 2.5, 0.25, False), "z": (6000, 1.0, 0.35, True),
    "v": (4000, 3.0, 0.2, True),
}
STOPS = {"p": (1000, 3.0), "t": (4500, 1.5), "k": (2200, 1.0), "b": (800, 3.0), "d": (4000, 1.5), "g": (2000, 1.0)}
CONSONANTS = [*SONORANTS, *FRICATIVES, *STOPS]
NUCLEI = [*VOWELS, *DIPHTHONGS]
LENGTH = {"vowel": 1.0, "diphthong": 1.4, "sonorant": 0.45, "fricative": 0.6, "stop": 0.45}
WORDS = 48  # classes
CROSSFADE_SECONDS = 0.008


@dataclass(frozen=True)
class Phone:
    name: str
    kind: str  # vowel, diphthong, sonorant, fricative or stop

    @property
    def weight(self) -> float:
        """Relative duration."""
        return LENGTH[self.kind]


def phone(name: str) -> Phone:
    kind = ("vowel" if name in VOWELS else "diphthong" if name in DIPHTHONGS else "sonorant" if name in SONORANTS
            else "fricative" if name in FRICATIVES else "stop")
    return Phone(name, kind)


def word_phones(seed: int, index: int) -> tuple[str, ...]:
    """Pseudo-word ``index``: 1-3 syllables of (C)(C)V(C), drawn from ``(seed, index)``."""
    rng = np.random.default_rng([seed, zlib.crc32(b"pseudo-word"), index])
    phones: list[str] = []
    for _ in range(int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))):
        onset = int(rng.choice([0, 1, 2], p=[0.25, 0.6, 0.15]))
        phones += [str(rng.choice(CONSONANTS)) for _ in range(onset)]
        phones.append(str(rng.choice(NUCLEI)))
        if rng.uniform() < 0.45:
            phones.append(str(rng.choice(CONSONANTS)))
    return tuple(phones)


def _durations(rng: np.random.Generator, phones: list[Phone], n: int) -> np.ndarray:
    """Samples per phone, summing to ``n``: each phone's weight jittered by +-25 %."""
    weights = np.array([p.weight for p in phones]) * rng.uniform(0.75, 1.25, len(phones))
    bounds = np.round(np.cumsum(np.concatenate([[0.0], weights])) / weights.sum() * n).astype(int)
    return np.diff(bounds)


def _voiced(source: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """``source [m]`` through resonances at ``formants`` Hz, bandwidth rising with frequency."""
    return _filter(source, _resonances(formants, 50.0 + 0.04 * float(formants.mean())))


def _noise(rng: np.random.Generator, m: int, centre_hz: float, octaves: float) -> np.ndarray:
    return _filter(rng.standard_normal(m), _band(centre_hz, octaves))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def _segment(rng: np.random.Generator, p: Phone, source: np.ndarray, tract: float, following: str | None) -> np.ndarray:
    """One phone's samples, ``[len(source)]``, at about unit RMS for a vowel."""
    m = source.size
    if p.kind == "vowel":
        return _unit(_voiced(source, np.array(VOWELS[p.name]) * tract))
    if p.kind == "diphthong":  # two halves with the midpoint's formants between them
        start, end = (np.array(VOWELS[v]) * tract for v in DIPHTHONGS[p.name])
        thirds = np.array_split(np.arange(m), 3)
        parts = [_voiced(source[idx], start + (end - start) * k / 2) for k, idx in enumerate(thirds)]
        return _unit(np.concatenate(parts))
    if p.kind == "sonorant":
        formants, level = SONORANTS[p.name]
        return level * _unit(_voiced(source, np.array(formants) * tract))
    if p.kind == "fricative":
        centre, octaves, level, voiced = FRICATIVES[p.name]
        hiss = _unit(_noise(rng, m, centre * tract, octaves))
        buzz = 0.5 * _unit(_voiced(source, np.array((250.0, 1200.0)) * tract)) if voiced else 0.0
        return level * (hiss + buzz)
    centre, octaves = STOPS[p.name]  # stop: closure, burst, aspiration towards the next vowel
    out = np.zeros(m)
    closure = int(m * rng.uniform(0.4, 0.6))
    burst = max(1, int(0.012 * SAMPLE_RATE))
    out[closure:closure + burst] = 0.8 * _unit(_noise(rng, burst, centre * tract, octaves))[: m - closure]
    tail = m - closure - burst
    if tail > 0:
        shape = np.array(VOWELS.get(following or "", (500, 1500, 2500))) * tract
        aspiration = _unit(_filter(rng.standard_normal(tail), _resonances(shape, 200.0)))
        out[closure + burst:] = 0.25 * aspiration * np.linspace(1.0, 0.3, tail)
    return out


def _crossfade(segments: list[np.ndarray]) -> np.ndarray:
    """Concatenate segments, each faded in and out over ``CROSSFADE_SECONDS`` (clicks removed)."""
    ramp_n = int(CROSSFADE_SECONDS * SAMPLE_RATE)
    out = []
    for seg in segments:
        seg = seg.copy()
        k = min(ramp_n, seg.size // 2)
        if k:
            ramp = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, k)) ** 2
            seg[:k] *= ramp
            seg[-k:] *= ramp[::-1]
        out.append(seg)
    return np.concatenate(out)


def pseudo_word(rng: np.random.Generator, n: int, phones: tuple[str, ...]) -> np.ndarray:
    """One speaker saying the pseudo-word ``phones`` in ``n`` samples: ``[n]``."""
    sequence = [phone(name) for name in phones]
    contour = ((0.0, 0.0), (0.3, rng.uniform(0.0, 0.25)), (1.0, rng.uniform(-0.45, 0.1)))
    source = tonal(rng, n, contour, 80.0, 260.0, harmonics=60)  # one glottal source for the word
    tract = rng.uniform(0.8, 1.2)
    cuts = np.concatenate([[0], np.cumsum(_durations(rng, sequence, n))])
    segments = [_segment(rng, p, source[cuts[k]:cuts[k + 1]], tract,
                         phones[k + 1] if k + 1 < len(phones) else None) for k, p in enumerate(sequence)]
    word = _crossfade(segments)
    bandwidth = rng.uniform(4000.0, 8000.0)
    return _filter(word, lambda f: 1.0 / (1.0 + (f / bandwidth) ** 8))


def word_classes(seed: int = 0, words: int | None = None) -> dict[str, Event]:
    """``words`` (default ``WORDS``) distinct pseudo-words as synth classes, named after their phones."""
    words = WORDS if words is None else words
    classes: dict[str, Event] = {}
    index = 0
    while len(classes) < words:
        phones = word_phones(seed, index)
        classes.setdefault("-".join(phones), partial(pseudo_word, phones=phones))
        index += 1
    return classes
