"""A timeline of live audio: raw PCM in chunks of any size -> each window's top labels as soon
as its audio has arrived. ``predict --stream`` scores with its model, the server's stream route
with its batcher; both through ``LiveTimeline``.

The windows are the file timeline's (``timeline.timeline_starts``: ``width`` frames every
``hop``), cut from the same source (``live_frames.live_source``: AST's log-mels or a waveform's
samples), so a stream's records equal the timeline of ``predict --timeline`` on the same audio
as a file: a window goes out once its last frame is in; at the end of input, the file timeline's last window, padded past the end as there
(none when a window ended exactly at the end)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.features import FeatureConfig, cut_windows
from .live_frames import live_source
from .results import Marking
from .timeline import WindowPrediction, timeline_starts, window_predictions

Scorer = Callable[[torch.Tensor], torch.Tensor]  # windows [w, *window_shape] f16 -> log-probabilities [w, classes]


class LiveTimeline:
    """Feeds a recording's bytes (16 kHz mono s16le, as ``arecord -f S16_LE -r 16000 -c 1``
    writes) and gives its timeline windows as they complete: ``span`` ``(width, hop)`` in frames
    (``Timeline.frames``), scored by ``score`` at most ``batch_size`` windows at a time, each
    window's top ``top_k`` labels and, when ``marking``'s task marks labels (multi-label), those
    at or above its thresholds."""

    def __init__(self, features: FeatureConfig, span: tuple[int, int], score: Scorer, marking: Marking,
                 top_k: int = 5, batch_size: int = 32):
        self.features, (self.width, self.hop) = features, span
        self.score, self.marking, self.top_k, self.batch_size = score, marking, top_k, batch_size
        self.live = live_source(features)
        self.source = self.live.empty()  # the source of the frames taken, from frame ``first`` on
        self.first = 0
        self.next = 0  # the next window's start (frames)

    def feed(self, data: bytes) -> list[WindowPrediction]:
        """The next bytes -> the windows they complete (often none), in order."""
        self.live.feed(data)
        starts = []
        while self.next + self.width <= self.live.ready:
            starts.append(self.next)
            self.next += self.hop
        return self._scored(starts)

    def end(self) -> list[WindowPrediction]:
        """At the end of input: the file timeline's windows not given yet (its last one, padded past
        the end; none when the last window given ended at the end or nothing came)."""
        self.live.end()
        if self.live.ready == 0:
            return []
        return self._scored([s for s in timeline_starts(self.live.ready, self.width, self.hop) if s >= self.next])

    def _scored(self, starts: list[int]) -> list[WindowPrediction]:
        """The windows at ``starts`` (frames), scored; then only the frames from ``next`` on are kept."""
        if not starts:
            return []
        self.source = torch.cat([self.source, self.live.take()])
        found = []
        for at in range(0, len(starts), self.batch_size):
            batch = starts[at:at + self.batch_size]
            windows = cut_windows(self.source, [s - self.first for s in batch], self.width, self.features).half()
            probs = self.score(windows).exp()  # [w, classes]
            bounds = [(s, min(s + self.width, self.live.taken)) for s in batch]
            for window, row in zip(window_predictions(probs, bounds, self.marking.labels, self.top_k), probs):
                window.positive = self.marking.positive(row)
                found.append(window)
        drop = min(max(0, self.next - self.first), len(self.source) // self.live.rows)
        self.source, self.first = self.source[drop * self.live.rows:], self.first + drop
        return found
