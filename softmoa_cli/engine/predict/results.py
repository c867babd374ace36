"""What ``predict`` says of a file: its top labels, the labels its task marks, and along a
timeline each window's top labels and the segments, from its windows' log-probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..classifier import Classifier
from ..scoring.evaluation import clip_log_probabilities
from ..task import Task
from .inputs import Decoded
from .timeline import Segment, WindowPrediction, timeline_predictions


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


def clip_scores(log_probs: torch.Tensor) -> torch.Tensor:
    """A clip's window log-probabilities ``[w, classes]`` -> its scores ``[classes]`` (float32):
    the mean of the window probabilities (the window rule)."""
    return clip_log_probabilities(log_probs, torch.zeros(len(log_probs), dtype=torch.long), 1)[0].exp().float()


@dataclass(frozen=True)
class Marking:
    """How a classifier's scores become a prediction: its ``labels``, ``task`` and decision
    ``thresholds [classes]`` (float32; 0.5 each when it has none)."""

    labels: list[str]
    task: Task
    thresholds: torch.Tensor

    @classmethod
    def of(cls, classifier: Classifier) -> Marking:
        given = 0.5 if classifier.thresholds is None else classifier.thresholds
        thresholds = torch.broadcast_to(torch.as_tensor(given, dtype=torch.float32), (len(classifier.labels),))
        return cls(classifier.labels, classifier.task, thresholds)

    def file_prediction(self, name: str, scores: torch.Tensor, top_k: int) -> FilePrediction:
        """A file's top-k labels from its ``scores [classes]``, and the labels its task marks."""
        values, indices = scores.topk(min(top_k, scores.numel()))
        prediction = FilePrediction(name, [(self.labels[i], round(float(v), 6))
                                           for v, i in zip(values, indices.tolist())], scores=scores)
        prediction.positive = self.positive(scores)
        if prediction.positive is not None:
            prediction.thresholds = {label: round(float(t), 6) for label, t in zip(self.labels, self.thresholds)}
        return prediction

    def positive(self, scores: torch.Tensor) -> list[tuple[str, float]] | None:
        """The ``(label, score)`` pairs of ``scores [classes]`` at or above their thresholds,
        highest first; None when the task marks no labels (single-label)."""
        marked = self.task.marked(scores, self.thresholds.to(scores.dtype))
        if marked is None:
            return None
        order = scores.argsort(descending=True, stable=True).tolist()
        return [(self.labels[i], round(float(scores[i]), 6)) for i in order if marked[i]]

    def prediction(self, entry: Decoded, log_probs: torch.Tensor, top_k: int,
                   span: tuple[int, int] | None) -> FilePrediction:
        """A decoded file's prediction from the log-probabilities ``[w, classes]`` of all its
        windows (the clip's first, then any timeline windows; ``span``: the timeline's
        ``(window, hop)`` in frames, None without one)."""
        prediction = self.file_prediction(entry.name, clip_scores(log_probs[:entry.clip_windows]), top_k)
        if span is not None:
            prediction.timeline, prediction.segments = timeline_predictions(
                log_probs[entry.clip_windows:].exp(), entry.starts, entry.frames, span[0], self.labels,
                self.thresholds.double(), self.task, top_k)
        return prediction
