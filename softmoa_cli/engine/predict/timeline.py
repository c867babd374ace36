"""The timeline of a long recording: windows of ``window`` seconds every ``hop`` seconds, their
top-k labels, and segments where consecutive windows agree on a label above threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data.features import FeatureConfig, cut_windows
from ..errors import SoftmoaError
from ..task import Task

FRAMES_PER_SECOND = 100  # the fbank's 10 ms shift


@dataclass(frozen=True)
class Timeline:
    """Per-window scores along a file: windows of ``window`` seconds (at most the model's
    ``max_length``; a shorter one is padded to it, as prepare pads short clips) every
    ``hop`` seconds. None: ``max_length`` and half the window."""

    window: float | None = None
    hop: float | None = None

    def frames(self, max_length: int) -> tuple[int, int]:
        """``(window, hop)`` in frames, checked against the model's ``max_length``."""
        longest = max_length / FRAMES_PER_SECOND
        window = longest if self.window is None else self.window
        if not 0 < window <= longest + 1e-9:
            raise SoftmoaError(f"`window` {window:g}: give a window of more than 0 and at most the model's input, "
                               f"{longest:g} s (max_length {max_length} frames)")
        width = max(1, round(window * FRAMES_PER_SECOND))
        hop = window / 2 if self.hop is None else self.hop
        if not 0 < hop < math.inf:  # also refuses NaN
            raise SoftmoaError(f"`hop` {hop:g}: give a hop of more than 0 seconds (a finite number)")
        return width, max(1, round(hop * FRAMES_PER_SECOND))


def timeline_starts(frames: int, width: int, hop: int) -> list[int]:
    """Window starts every ``hop`` frames until a window reaches the clip's end (its last
    window may hold padding)."""
    starts = [0]
    while starts[-1] + width < frames:
        starts.append(starts[-1] + hop)
    return starts


def timeline_windows(source: torch.Tensor, frames: int, features: FeatureConfig,
                     span: tuple[int, int]) -> tuple[torch.Tensor, list[int]]:
    """A clip's ``clip_frames`` (``source``: log-mels or samples) of ``frames`` frames -> its
    timeline windows ``[w, *window]`` (float16; each of ``span[0]`` frames, padded to
    ``max_length`` and normalised as its front end does, ``features.cut_windows``) and their
    starts (frames), ``span``: ``(window, hop)`` in frames."""
    width, hop = span
    starts = timeline_starts(frames, width, hop)
    return cut_windows(source, starts, width, features).half(), starts


@dataclass
class WindowPrediction:
    """One timeline window: ``start`` and ``end`` in seconds and its top-k ``(label, score)``;
    ``positive``, where a live stream gives it for a multi-label model: the ``(label, score)``
    pairs at or above their thresholds, highest first (None: not given)."""

    start: float
    end: float
    predictions: list[tuple[str, float]]
    positive: list[tuple[str, float]] | None = None

    def to_dict(self) -> dict:
        pairs = lambda items: [{"label": l, "score": s} for l, s in items]
        found = {"start": self.start, "end": self.end, "predictions": pairs(self.predictions)}
        return found if self.positive is None else found | {"positive": pairs(self.positive)}


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


def timeline_predictions(probs: torch.Tensor, starts: list[int], frames: int, width: int, labels: list[str],
                         thresholds: torch.Tensor, task: Task,
                         top_k: int) -> tuple[list[WindowPrediction], list[Segment]]:
    """The windows' probabilities ``[w, classes]`` (windows of ``width`` frames at ``starts``,
    in a clip of ``frames`` frames) -> each window's top-k, and the segments
    (``timeline_segments``, at ``thresholds [classes]``), in seconds."""
    bounds = [(s, min(s + width, frames)) for s in starts]
    segments = [Segment(seconds(start), seconds(end), labels[label], round(score, 6))
                for start, end, label, score in timeline_segments(probs, bounds, thresholds, task)]
    return window_predictions(probs, bounds, labels, top_k), segments


def seconds(frame: int) -> float:
    """A frame index as seconds, rounded to the millisecond."""
    return round(frame / FRAMES_PER_SECOND, 3)


def window_predictions(probs: torch.Tensor, bounds: list[tuple[int, int]], labels: list[str],
                       top_k: int) -> list[WindowPrediction]:
    """The windows' probabilities ``[w, classes]`` over their ``bounds`` (frames) -> each window's
    start, end (seconds) and top-k labels."""
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [WindowPrediction(seconds(start), seconds(end), [(labels[i], round(float(v), 6))
                                                           for v, i in zip(values[w], indices[w].tolist())])
            for w, (start, end) in enumerate(bounds)]


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
