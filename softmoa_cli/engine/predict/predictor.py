"""The ``Predictor``: a classifier's scores for audio files, one file at a time or pipelined
(files decoded ahead in threads, their windows batched across files); ``predictor_for`` opens
one over a checkpoint or a run."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..classifier import Classifier
from ..data.features import windows
from ..devices import resolve_device
from ..errors import SoftmoaError
from ..runs.run import open_classifier
from ..scoring.evaluation import window_log_probabilities
from .inputs import Decoded, decode, display_name, expand_inputs, read_source
from .results import FilePrediction, Marking, clip_scores
from .stream import LiveTimeline
from .timeline import Timeline


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
        self.marking = Marking.of(classifier)
        self.thresholds = self.marking.thresholds

    def scores(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [samples]`` at 16 kHz -> class scores ``[classes]`` (float32, CPU): the mean
        of the window probabilities by the window rule (``data/features.py``)."""
        log_probs = window_log_probabilities(self.model, windows(wave, self.features), self.batch_size, self.device,
                                             self.task)  # [windows, classes]
        return clip_scores(log_probs)

    def predict_file(self, path: str | Path, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k labels of one file; raises AudioError for a file that cannot be used."""
        return self.predict(path, top_k).predictions

    def predict(self, path: str | Path, top_k: int = 5) -> FilePrediction:
        """One file's top-k labels (and, multi-label, its positive labels), one window batch at
        a time; raises AudioError for a file that cannot be used."""
        return self.marking.file_prediction(display_name(str(path)),
                                            self.scores(read_source(str(path), self.features.sample_rate)), top_k)

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
                submitted.append(pool.submit(decode, source, self.features, span) if pool
                                 else decode(source, self.features, span))

        pending: deque[Decoded] = deque()  # decoded, not yet yielded (in input order)
        buffer: deque[tuple[Decoded, int]] = deque()  # (entry, first window not yet batched)
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
                while pending and pending[0].complete:
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
        log_probs = self.log_probabilities(torch.cat(pieces) if len(pieces) > 1 else pieces[0])
        offset = 0
        for entry, first, take in owners:
            entry.parts.append((first, log_probs[offset:offset + take]))
            entry.done += take
            offset += take
        return offset

    def log_probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Float16 windows ``[b, frames, bins]`` -> log-probabilities ``[b, classes]`` (float64,
        CPU); on CUDA through pinned memory with a non-blocking copy."""
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        x = batch.to(self.device, non_blocking=True).float()
        with torch.inference_mode():
            logits = self.model(x).float().double()
        return self.task.log_probabilities(logits).cpu()

    def stream(self, timeline: Timeline, top_k: int = 5) -> LiveTimeline:
        """A live timeline of raw 16 kHz mono s16le audio (``stream.LiveTimeline``): windows and
        hop of ``timeline``, scored by this model ``batch_size`` windows at a time."""
        span = timeline.frames(self.features.max_length)
        return LiveTimeline(self.features, span, self.log_probabilities, self.marking, top_k, self.batch_size)

    def _finish(self, entry: Decoded, top_k: int, span: tuple[int, int] | None) -> FilePrediction:
        if entry.error is not None:
            return FilePrediction(entry.name, error=entry.error.reason, exception=entry.error)
        log_probs = torch.cat([part for _, part in sorted(entry.parts, key=lambda p: p[0])])
        prediction = self.marking.prediction(entry, log_probs, top_k, span)
        entry.windows = entry.parts = None  # free the memory of a yielded file
        return prediction


def predictor_for(checkpoint: str | None = None, run: str | Path | None = None, runs_root: str | Path | None = None,
                  device: str = "cpu", threshold: float | None = None, timeline: bool = False,
                  batch_size: int = 32, workers: int | None = None, quantize: str | None = None) -> Predictor:
    """A Predictor over ``runs.run.open_classifier``'s classifier (a ``checkpoint``, a finetune
    ``run``, or the most recent finished run under ``runs_root``); ``quantize`` ``"int8"``: its
    frozen layers in int8 (``Classifier.quantized``; the CPU only).

    A multi-label classifier marks the labels at or above its thresholds (a run's tuned ones, of
    its first fold; 0.5 for an AudioSet checkpoint); ``threshold`` replaces them with one for
    every label. A single-label one marks none, so a ``threshold`` is refused, unless
    ``timeline``: there it is the top label's score a segment needs (default 0.5)."""
    if quantize is not None and resolve_device(device).type != "cpu":
        raise SoftmoaError(f"`quantize` {quantize} scores on the CPU (its kernels are CPU only); drop `device` {device} "
                           "or score in float there")
    classifier = open_classifier(checkpoint, run, runs_root)
    if threshold is not None and not classifier.task.marks and not timeline:
        raise SoftmoaError(f"`threshold`: {classifier.source} is {classifier.task.title} (one label per file); "
                           "thresholds apply to multi-label models only")
    if quantize is not None:
        classifier = classifier.quantized()
    return Predictor(classifier.with_thresholds(threshold), device, batch_size, workers)
