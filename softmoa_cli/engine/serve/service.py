"""What the server does for a request, without HTTP: score an uploaded file with a task
(``Service.predict``, the JSON of one entry of ``softmoa predict --json``), open a live timeline
of streamed audio (``Service.stream``, the records of ``softmoa predict --stream``), describe the
tasks, add and remove them. Bad input raises a ``RequestError`` carrying the HTTP status it means.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, replace


import torch

from ..data.audio import read_audio_bytes, to_mono_16k
from ..errors import AudioError, SoftmoaError
from ..predict.inputs import Decoded, decode_wave
from ..predict.results import Marking
from ..predict.stream import LiveTimeline
from ..predict.timeline import Timeline
from .batcher import Batcher, QueueFull
from .tasks import Group, ServedTask, TaskSet


class RequestError(SoftmoaError):
    """A request the server refuses: ``status`` (400 bad input, 404 no such task, 413 too large,
    503 busy) and the one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Query:
    """What a predict request asks besides the audio: ``top_k`` labels, a ``threshold`` for every
    label (multi-label, or a single-label timeline), and a ``timeline`` of ``window``-second
    windows every ``hop`` seconds (defaults as ``softmoa predict``)."""

    top_k: int = 5
    threshold: float | None = None
    timeline: bool = False
    window: float | None = None
    hop: float | None = None

    def check(self) -> None:
        if self.top_k < 1:
            raise RequestError(400, f"top_k {self.top_k}: give 1 or more")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise RequestError(400, f"threshold {self.threshold:g}: give a score from 0 to 1")
        if not self.timeline and (self.window is not None or self.hop is not None):
            raise RequestError(400, "window and hop shape a timeline: add timeline=true")


@dataclass(frozen=True)
class Pending:
    """A request whose windows are queued: ``future`` gives their log-probabilities, ``answer``
    the response from them."""

    name: str
    future: Future
    decoded: Decoded
    marking: Marking
    query: Query
    span: tuple[int, int] | None

    def answer(self) -> dict:
        """The response (waits for ``future`` if it is not done)."""
        try:
            log_probs = self.future.result()
        except KeyError:
            raise RequestError(404, f"task {self.name!r} was removed while the request waited") from None
        return self.marking.prediction(self.decoded, log_probs, self.query.top_k, self.span).to_dict()


class Service:
    """The tasks being served and the batcher scoring them; ``max_bytes``: the largest upload."""

    def __init__(self, tasks: TaskSet, batcher: Batcher, max_bytes: int = 50 << 20):
        self.tasks, self.batcher, self.max_bytes = tasks, batcher, max_bytes

    def describe(self) -> list[dict]:
        """Every task: name, labels, task type, method, backbone, window seconds, trained parameters."""
        return [self.tasks.get(name)[0].describe() for name in self.tasks.names]

    def predict(self, name: str, data: bytes, filename: str, query: Query = Query()) -> dict:
        """Score the audio file ``data`` (any format and rate ``predict`` reads) with the task
        ``name``: ``{"file", "predictions", ...}`` as ``softmoa predict --json`` gives one file.
        Blocks until its windows are scored (call it from a worker thread)."""
        return self.submit(name, data, filename, query).answer()

    def submit(self, name: str, data: bytes, filename: str, query: Query = Query()) -> Pending:
        """``predict`` in two steps: check, decode and queue the file's windows (this call: it
        blocks while decoding), then ``answer()`` once ``future`` is done. The HTTP API waits
        for the future without holding a thread, so every request in flight can be in a batch."""
        query.check()
        task, group = self._task(name)
        if len(data) > self.max_bytes:
            raise RequestError(413, f"{filename}: {len(data) / 2**20:.1f} MB is over the limit of "
                                    f"{self.max_bytes / 2**20:g} MB")
        classifier = task.classifier
        if query.threshold is not None and not classifier.task.marks and not query.timeline:
            raise RequestError(400, f"threshold: task {name!r} is {classifier.task.title} (one label per file); "
                                    "thresholds apply to multi-label tasks or a timeline")
        features = classifier.features
        try:
            span = Timeline(query.window, query.hop).frames(features.max_length) if query.timeline else None
            wave, rate = read_audio_bytes(data, filename)
            decoded = decode_wave(filename, to_mono_16k(wave, rate, features.sample_rate), features, span)
        except AudioError as error:
            raise RequestError(400, f"{filename}: {error.reason}") from None
        except SoftmoaError as error:
            raise RequestError(400, str(error).replace("`", "")) from None
        if not torch.isfinite(decoded.windows).all():  # samples so large that their power overflows
            raise RequestError(400, f"{filename}: its samples are too large to score (their spectrum overflows); "
                                    "scale the audio to the range -1 to 1")
        future = self._queued(task, group, decoded.windows)
        return Pending(name, future, decoded, Marking.of(classifier.with_thresholds(query.threshold)), query, span)

    def stream(self, name: str, query: Query) -> LiveTimeline:
        """A live timeline of the task ``name`` (``query``: ``top_k``, ``threshold``, ``window``,
        ``hop``), its windows scored by the batcher beside the other requests: feed it raw 16 kHz
        mono s16le bytes, it gives each window as its audio completes (``predict --stream``'s
        records). Its ``feed`` and ``end`` block while the windows are scored."""
        replace(query, timeline=True).check()
        task, group = self._task(name)
        classifier = task.classifier
        if query.threshold is not None and not classifier.task.marks:
            raise RequestError(400, f"threshold: task {name!r} is {classifier.task.title} (one label per window); "
                                    "thresholds apply to multi-label tasks")
        try:
            span = Timeline(query.window, query.hop).frames(classifier.features.max_length)
            return LiveTimeline(classifier.features, span, lambda windows: self._scored(task, group, windows),
                                Marking.of(classifier.with_thresholds(query.threshold)), query.top_k,
                                self.batcher.max_batch)
        except SoftmoaError as error:
            raise RequestError(400, str(error).replace("`", "")) from None

    def _task(self, name: str) -> tuple[ServedTask, Group]:
        try:
            return self.tasks.get(name)
        except SoftmoaError as error:
            raise RequestError(404, str(error)) from None

    def _queued(self, task: ServedTask, group: Group, windows: torch.Tensor) -> Future:
        """``windows [w, ...]`` of ``task`` queued in the batcher: the future of their
        log-probabilities ``[w, classes]``."""
        try:
            return self.batcher.submit(task, group, windows)
        except QueueFull as error:
            raise RequestError(503, f"busy ({error}); retry in a moment") from None
        except KeyError:
            raise RequestError(404, f"task {task.name!r} was removed while the request waited") from None

    def _scored(self, task: ServedTask, group: Group, windows: torch.Tensor) -> torch.Tensor:
        """``windows [w, ...]`` of ``task`` through the batcher -> log-probabilities ``[w, classes]``."""
        try:
            return self._queued(task, group, windows).result()
        except KeyError:
            raise RequestError(404, f"task {task.name!r} was removed while the request waited") from None

    def add(self, name: str | None, reference: str) -> dict:
        """Serve the run ``reference`` (a folder or hub id) as task ``name``; its description."""
        try:
            return self.tasks.add(name, reference).describe()
        except SoftmoaError as error:
            raise RequestError(400, str(error).replace("`", "")) from None

    def remove(self, name: str) -> None:
        try:
            self.tasks.remove(name)
        except SoftmoaError as error:
            raise RequestError(404, str(error)) from None
