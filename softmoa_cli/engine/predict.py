"""Scoring audio files with a classifier: features per window, probabilities averaged.
Single-label models give softmax scores; multi-label ones (a multi-label run, an AudioSet
checkpoint) independent sigmoid scores, and the labels at or above their decision thresholds.

Inputs are files, ``-`` (one WAV/FLAC/OGG file on standard input) or folders (every audio file
under them, recursively, sorted). ``Predictor.predict_files`` decodes and featurises files in
background threads, a few files ahead, and runs the model on batches of ``batch_size`` windows
packed across files; results come back in input order, a bad file's error in its place. With
a ``Timeline`` it also scores regular windows (``window`` and ``hop`` seconds) and merges
consecutive windows that agree on a label above threshold into segments."""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data.audio import load_mono_16k, read_audio_bytes, to_mono_16k
from .classifier import Classifier
from .data.features import clip_frames, normalize, pad_or_cut, windows
from .errors import AudioError, SoftmoaError
from .runs.run import open_classifier
from .task import Task
from .devices import resolve_device
from .scoring.evaluation import clip_log_probabilities, window_log_probabilities

STDIN = "-"  # the argument that reads one file from standard input
STDIN_NAME = "<stdin>"  # its name in the output
FRAMES_PER_SECOND = 100  # the fbank's 10 ms shift


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """The files to score, in order: ``-`` kept (standard input), a folder replaced by every
    audio file under it (recursively, sorted by path), anything else kept as given (a missing
    file is reported when it is read)."""
    from .data.custom import AUDIO

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
        from .data.custom import AUDIO

        raise AudioError(source, f"a folder with no audio files under it ({', '.join(AUDIO)})")
    return load_mono_16k(source, sample_rate)


@dataclass(frozen=True)
class Timeline:
    """Per-window scores along a file: windows of ``window`` seconds (at most the model's
    ``max_length``; a shorter one is zero-padded to it, as prepare pads short clips) every
    ``hop`` seconds. None: ``max_length`` and half the window."""

    window: float | None = None
    hop: float | None = None

    def frames(self, max_length: int) -> tuple[int, int]:
        """``(window, hop)`` in frames, checked against the model's ``max_length``."""
        longest = max_length / FRAMES_PER_SECOND
        window = longest if self.window is None else self.window
        if not 0 < window <= longest + 1e-9:
            raise SoftmoaError(f"--window {window:g}: give a window of more than 0 and at most the model's input, "
                               f"{longest:g} s (max_length {max_length} frames)")
        width = max(1, round(window * FRAMES_PER_SECOND))
        hop = window / 2 if self.hop is None else self.hop
        if hop <= 0:
            raise SoftmoaError(f"--hop {hop:g}: give a hop of more than 0 seconds")
        return width, max(1, round(hop * FRAMES_PER_SECOND))


def timeline_starts(frames: int, width: int, hop: int) -> list[int]:
    """Window starts every ``hop`` frames until a window reaches the clip's end (its last
    window may hold padding)."""
    starts = [0]
    while starts[-1] + width < frames:
        starts.append(starts[-1] + hop)
    return starts


@dataclass
class WindowPrediction:
    """One timeline window: ``start`` and ``end`` in seconds and its top-k ``(label, score)``."""

    start: float
    end: float
    predictions: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end,
                "predictions": [{"label": l, "score": s} for l, s in self.predictions]}


@dataclass
class Segment:
    """Consecutive timeline windows that agree on ``label`` above threshold, merged: from the
    first window's start to the last one's end, with the mean of their scores."""

    start: float
    end: float
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "label": self.label, "score": self.score}


@dataclass
class FilePrediction:
    """Top-k ``(label, score)`` pairs for one file, or the reason it could not be scored; for a
    multi-label model also ``positive``, every ``(label, score)`` at or above its threshold
    (highest score first; None for a single-label model), and ``thresholds``, each label's
    threshold (label -> threshold; None for a single-label model); with a timeline,
    ``timeline`` and ``segments``."""

    file: str
    predictions: list[tuple[str, float]] | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)  # for a traceback on request
    positive: list[tuple[str, float]] | None = None
    timeline: list[WindowPrediction] | None = None
    segments: list[Segment] | None = None
    scores: torch.Tensor | None = field(default=None, repr=False)  # every label's score, unrounded
    thresholds: dict[str, float] | None = None

    def to_dict(self) -> dict:
        """``{"file", "predictions": [{label, score}]}`` and, multi-label, ``"positive"`` alike,
        each entry with its label's ``threshold``; with a timeline ``"timeline": [{start, end,
        predictions}]`` and ``"segments"``."""
        marks = self.thresholds or {}
        pairs = lambda items: [{"label": l, "score": s, **({"threshold": marks[l]} if l in marks else {})}
                               for l, s in items or []]
        result = {"file": self.file, "predictions": pairs(self.predictions)}
        if self.positive is not None:
            result["positive"] = pairs(self.positive)
        if self.timeline is not None:
            result["timeline"] = [w.to_dict() for w in self.timeline]
            result["segments"] = [s.to_dict() for s in self.segments or []]
        return result


@dataclass
class _Decoded:
    """One input after decoding: its windows (by the window rule, then any timeline windows)."""

    name: str
    windows: torch.Tensor | None = None
    clip_windows: int = 0
    starts: list[int] | None = None
    frames: int = 0
    error: AudioError | None = None
    parts: list = field(default_factory=list)  # [(first window, log-probabilities)] as batches come back
    done: int = 0


class Predictor:
    """Scores audio files with a ``Classifier`` (its model, labels, task, thresholds and features).
    The task decides the scores (softmax or sigmoid) and which labels are marked: a multi-label
    classifier marks those at or above its thresholds (default 0.5 each); along a timeline a
    single-label one needs its top label at its threshold (default 0.5). ``batch_size``: windows
    per forward pass, packed across files; ``workers``: threads decoding files ahead (default: up
    to 4, the CPU count)."""

    def __init__(self, classifier: Classifier, device: str = "cpu", batch_size: int = 32, workers: int | None = None):
        self.classifier = classifier
        self.device = resolve_device(device)
        self.model = classifier.model.eval().to(self.device)
        self.labels, self.task, self.features = classifier.labels, classifier.task, classifier.features
        self.batch_size = batch_size
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        thresholds = 0.5 if classifier.thresholds is None else classifier.thresholds
        self.thresholds = torch.broadcast_to(torch.as_tensor(thresholds, dtype=torch.float32), (len(self.labels),))

    def scores(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [samples]`` at 16 kHz -> class scores ``[classes]`` (float32, CPU): the mean
        of the window probabilities by the window rule (``data/features.py``)."""
        log_probs = window_log_probabilities(self.model, windows(wave, self.features), self.batch_size, self.device,
                                             self.task)  # [windows, classes]
        return self._clip_scores(log_probs)

    @staticmethod
    def _clip_scores(log_probs: torch.Tensor) -> torch.Tensor:
        return clip_log_probabilities(log_probs, torch.zeros(len(log_probs), dtype=torch.long), 1)[0].exp().float()

    def predict_file(self, path: str | Path, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k labels of one file; raises AudioError for a file that cannot be used."""
        return self.predict(path, top_k).predictions

    def predict(self, path: str | Path, top_k: int = 5) -> FilePrediction:
        """One file's top-k labels (and, multi-label, its positive labels), one window batch at
        a time; raises AudioError for a file that cannot be used."""
        return self._prediction(display_name(str(path)), self.scores(read_source(str(path), self.features.sample_rate)),
                                top_k)

    def _prediction(self, name: str, scores: torch.Tensor, top_k: int) -> FilePrediction:
        values, indices = scores.topk(min(top_k, scores.numel()))
        prediction = FilePrediction(name, [(self.labels[i], round(float(v), 6))
                                           for v, i in zip(values, indices.tolist())], scores=scores)
        marked = self.task.marked(scores, self.thresholds)  # None: the task marks no labels
        if marked is not None:
            order = scores.argsort(descending=True, stable=True).tolist()
            prediction.positive = [(self.labels[i], round(float(scores[i]), 6)) for i in order if marked[i]]
            prediction.thresholds = {label: round(float(t), 6) for label, t in zip(self.labels, self.thresholds)}
        return prediction

    # --- many files: decoded ahead in threads, windows batched across files ---------------------

    def predict_files(self, paths: Iterable[str | Path], top_k: int = 5,
                      timeline: Timeline | None = None) -> Iterator[FilePrediction]:
        """One FilePrediction per input (folders expanded, ``-`` standard input), in order; a bad
        file yields its error and the others go on. Files are decoded ``workers`` at a time
        ahead; their windows go through the model ``batch_size`` at a time, across files."""
        sources = expand_inputs(paths)
        span = timeline.frames(self.features.max_length) if timeline is not None else None
        ahead = max(2 * self.workers, 4)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="softmoa-decode") if self.workers > 0 else None
        submitted: deque = deque()
        queue = iter(sources)

        def submit() -> None:
            source = next(queue, None)
            if source is not None:
                submitted.append(pool.submit(self._decode, source, span) if pool else self._decode(source, span))

        pending: deque[_Decoded] = deque()  # decoded, not yet yielded (in input order)
        buffer: deque[tuple[_Decoded, int]] = deque()  # (entry, first window not yet batched)
        buffered = 0
        try:
            for _ in range(ahead):
                submit()
            while submitted:
                head = submitted.popleft()
                entry = head.result() if pool else head
                submit()
                pending.append(entry)
                if entry.error is None:
                    buffer.append((entry, 0))
                    buffered += len(entry.windows)
                while buffered >= self.batch_size:
                    buffered -= self._run_batch(buffer)
                while pending and _complete(pending[0]):
                    yield self._finish(pending.popleft(), top_k, span)
            while buffered:
                buffered -= self._run_batch(buffer)
            while pending:
                yield self._finish(pending.popleft(), top_k, span)
        finally:
            if pool:
                for future in submitted:
                    future.cancel()
                pool.shutdown(wait=True)

    def _decode(self, source: str, span: tuple[int, int] | None) -> _Decoded:
        """Read and featurise one input (in a worker thread): its windows, float16."""
        name = display_name(source)
        try:
            wave = read_source(source, self.features.sample_rate)
        except AudioError as error:
            return _Decoded(name, error=error)
        clip = windows(wave, self.features)
        if span is None:
            return _Decoded(name, clip, len(clip))
        width, hop = span
        frames = clip_frames(wave, self.features)
        starts = timeline_starts(frames.shape[0], width, hop)
        length = self.features.max_length
        chunks = torch.stack([pad_or_cut(frames[s:s + width], length) for s in starts])
        extra = normalize(chunks, self.features).half()
        return _Decoded(name, torch.cat([clip, extra]), len(clip), starts, frames.shape[0])

    def _run_batch(self, buffer: deque) -> int:
        """Up to ``batch_size`` windows from the front of ``buffer`` through the model; each
        window's log-probabilities go back to its file. Returns the windows run."""
        pieces, owners = [], []
        room = self.batch_size
        while buffer and room:
            entry, first = buffer.popleft()
            take = min(room, len(entry.windows) - first)
            pieces.append(entry.windows[first:first + take])
            owners.append((entry, first, take))
            room -= take
            if first + take < len(entry.windows):
                buffer.appendleft((entry, first + take))
        log_probs = self._forward(torch.cat(pieces) if len(pieces) > 1 else pieces[0])
        offset = 0
        for entry, first, take in owners:
            entry.parts.append((first, log_probs[offset:offset + take]))
            entry.done += take
            offset += take
        return offset

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Float16 windows ``[b, frames, bins]`` -> log-probabilities ``[b, classes]`` (float64,
        CPU); on CUDA through pinned memory with a non-blocking copy."""
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        x = batch.to(self.device, non_blocking=True).float()
        with torch.inference_mode():
            logits = self.model(x).float().double()
        return self.task.log_probabilities(logits).cpu()

    def _finish(self, entry: _Decoded, top_k: int, span: tuple[int, int] | None) -> FilePrediction:
        if entry.error is not None:
            return FilePrediction(entry.name, error=entry.error.reason, exception=entry.error)
        log_probs = torch.cat([part for _, part in sorted(entry.parts, key=lambda p: p[0])])
        prediction = self._prediction(entry.name, self._clip_scores(log_probs[:entry.clip_windows]), top_k)
        if span is not None:
            prediction.timeline, prediction.segments = self._timeline(log_probs[entry.clip_windows:].exp(),
                                                                      entry.starts, entry.frames, span, top_k)
        entry.windows = entry.parts = None  # free the memory of a yielded file
        return prediction

    def _timeline(self, probs: torch.Tensor, starts: list[int], frames: int, span: tuple[int, int],
                  top_k: int) -> tuple[list[WindowPrediction], list[Segment]]:
        """Per-window top-k, and the segments (``timeline_segments``) in seconds."""
        width = span[0]
        bounds = [(s, min(s + width, frames)) for s in starts]
        seconds = lambda frame: round(frame / FRAMES_PER_SECOND, 3)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        timeline = [WindowPrediction(seconds(start), seconds(end), [(self.labels[i], round(float(v), 6))
                                                                   for v, i in zip(values[w], indices[w].tolist())])
                    for w, (start, end) in enumerate(bounds)]
        segments = [Segment(seconds(start), seconds(end), self.labels[label], round(score, 6))
                    for start, end, label, score in timeline_segments(probs, bounds, self.thresholds.double(),
                                                                      self.task)]
        return timeline, segments


def timeline_segments(probs: torch.Tensor, bounds: list[tuple[int, int]], thresholds: torch.Tensor,
                      task: Task) -> list[tuple[int, int, int, float]]:
    """Segments ``(start, end, label, score)`` of a timeline: windows' probabilities ``[w,
    classes]`` over their ``bounds`` (frames), told per stretch of time. The window edges cut
    the clip into stretches; each stretch takes the mean of the windows covering it, and the task
    says which labels hold there (``Task.active``). Single-label: a stretch has one label, its top
    one if that scores at least its threshold, so segments never overlap; multi-label: every label
    at or above its threshold (labels may overlap one another, a label never overlaps itself). Consecutive stretches of a label merge into one segment,
    scored by the duration-weighted mean; sorted by start, then label."""
    edges = sorted({edge for bound in bounds for edge in bound})
    stretches = torch.tensor(list(zip(edges, edges[1:])), dtype=torch.float64).reshape(-1, 2)  # [s, 2]
    windows = torch.tensor(bounds, dtype=torch.float64)  # [w, 2]
    covers = (windows[None, :, 0] <= stretches[:, None, 0]) & (windows[None, :, 1] >= stretches[:, None, 1])
    counts = covers.sum(1, keepdim=True)  # [s, 1]: 0 where a hop longer than the window leaves a gap
    means = covers.double() @ probs.double() / counts.clamp(min=1)  # [s, classes]
    active = task.active(means, thresholds) & (counts > 0)
    lengths = stretches[:, 1] - stretches[:, 0]
    found = []
    for label in range(probs.shape[1]):
        run = None  # [first stretch, last stretch] of the current segment
        for k in [*torch.nonzero(active[:, label]).flatten().tolist(), None]:
            if run is not None and (k is None or k != run[1] + 1 or stretches[k, 0] != stretches[run[1], 1]):
                piece = slice(run[0], run[1] + 1)
                score = float((means[piece, label] * lengths[piece]).sum() / lengths[piece].sum())
                found.append((int(stretches[run[0], 0]), int(stretches[run[1], 1]), label, score))
                run = None
            if k is not None:
                run = [k, k] if run is None else [run[0], k]
    return sorted(found, key=lambda s: (s[0], s[1], s[2]))


def _complete(entry: _Decoded) -> bool:
    return entry.error is not None or entry.done == len(entry.windows)


def predictor_for(checkpoint: str | None = None, run: str | Path | None = None, runs_root: str | Path | None = None,
                  device: str = "cpu", threshold: float | None = None, timeline: bool = False,
                  batch_size: int = 32, workers: int | None = None) -> Predictor:
    """A Predictor over ``runs.run.open_classifier``'s classifier (a ``checkpoint``, a finetune
    ``run``, or the most recent finished run under ``runs_root``).

    A multi-label classifier marks the labels at or above its thresholds (a run's tuned ones, of
    its first fold; 0.5 for an AudioSet checkpoint); ``threshold`` replaces them with one for
    every label. A single-label one marks none, so a ``threshold`` is refused, unless
    ``timeline``: there it is the top label's score a segment needs (default 0.5)."""
    classifier = open_classifier(checkpoint, run, runs_root)
    if threshold is not None and not classifier.task.marks and not timeline:
        raise SoftmoaError(f"`threshold`: {classifier.source} is {classifier.task.title} (one label per file); "
                           "thresholds apply to multi-label models only")
    return Predictor(classifier.with_thresholds(threshold), device, batch_size, workers)
