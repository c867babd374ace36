"""Dynamic batching: the windows of many requests, of any tasks on one backbone, scored together.

A request puts its task's windows ``[w, ...]`` in its group's queue (``Batcher.submit``) and gets
a ``concurrent.futures.Future`` of their log-probabilities ``[w, classes]`` (float64, as
``predict`` computes them). Each group has one worker thread: it waits for a first window,
then until the oldest window queued has waited ``max_wait_ms`` (since it was queued) for more,
takes up to ``max_batch`` windows (a long file's windows may be split over several batches,
beside other requests' windows) and runs them through the group's shared model at once. A queue holding
``max_queue`` windows refuses more (``QueueFull``: the server answers 503). ``close`` stops
taking requests and finishes the ones queued.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from .tasks import Group, ServedTask


class QueueFull(RuntimeError):
    """The group's queue holds ``max_queue`` windows already."""


@dataclass
class _Request:
    """One request's windows and what of them has been scored."""

    task: ServedTask
    windows: torch.Tensor  # [w, ...]
    future: Future
    scores: list = field(default_factory=list)  # (start, log-probabilities [k, classes]) as batches finish
    taken: int = 0  # windows handed to a batch so far
    done: int = 0  # windows scored so far
    arrived: float = field(default_factory=time.monotonic)

    def finish(self, start: int, log_probs: torch.Tensor) -> None:
        self.scores.append((start, log_probs))
        self.done += len(log_probs)
        if self.done == len(self.windows) and not self.future.done():
            ordered = [p for _, p in sorted(self.scores, key=lambda item: item[0])]
            self.future.set_result(torch.cat(ordered))


IDLE_CHECK_S = 1.0  # how often an idle worker looks whether its group is still served


class _Lane:
    """One group's queue and its worker thread; the worker stops once the batcher is closed, or
    its group is no longer served, and its queue is empty (a stopped lane takes no request)."""

    def __init__(self, group: Group, batcher: Batcher):
        self.group, self.batcher = group, batcher
        self.queue: deque[_Request] = deque()
        self.waiting = 0  # windows queued, not yet taken
        self.stopped = False
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="softmoa-batcher", daemon=True)
        self.thread.start()

    def put(self, request: _Request) -> None:
        with self.ready:
            if self.batcher.closed:
                raise QueueFull("the server is shutting down")
            if self.stopped:  # its group's last task was removed as the request came in
                raise KeyError(request.task.key)
            if self.waiting + len(request.windows) > self.batcher.max_queue and self.waiting:
                raise QueueFull(f"{self.waiting} windows are waiting already")
            self.queue.append(request)
            self.waiting += len(request.windows)
            self.ready.notify()

    def _take(self) -> list[tuple[_Request, int, int]] | None:
        """Up to ``max_batch`` windows, ``(request, start, stop)`` slices, once the oldest has
        waited ``max_wait_ms`` since it was queued or the batch is full; None when closed and
        empty. (Counted from the queueing, not from when this worker is free: a window that
        waited through the previous forward pass does not wait again.)"""
        b = self.batcher
        with self.ready:
            while not self.queue:
                if b.closed or not self.group.served:
                    self.stopped = True
                    return None
                self.ready.wait(IDLE_CHECK_S)
            deadline = self.queue[0].arrived + b.max_wait_ms / 1000
            while self.waiting < b.max_batch and not b.closed and (left := deadline - time.monotonic()) > 0:
                self.ready.wait(left)
            batch, room = [], b.max_batch
            while self.queue and room:
                request = self.queue[0]
                stop = min(len(request.windows), request.taken + room)
                batch.append((request, request.taken, stop))
                room -= stop - request.taken
                self.waiting -= stop - request.taken
                request.taken = stop
                if stop == len(request.windows):
                    self.queue.popleft()
                if not b.mix_requests:
                    break
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._score(batch)
            except Exception as error:  # a failed forward fails its requests, never the worker
                for request, _, _ in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
        self.batcher._forget(self)  # a group no longer served: its backbone can go

    def _score(self, batch: list[tuple[_Request, int, int]]) -> None:
        with self.group.lock, torch.inference_mode():
            # A task removed while its request waited fails that request alone, not the batch.
            gone = [item for item in batch if item[0].task.key not in self.group.shared.heads]
            for request, _, _ in gone:
                if not request.future.done():
                    request.future.set_exception(KeyError(request.task.key))
            batch = [item for item in batch if item[0].task.key in self.group.shared.heads]
            if not batch:
                return
            windows = torch.cat([request.windows[start:stop] for request, start, stop in batch]).float()
            keys = [request.task.key for request, start, stop in batch for _ in range(stop - start)]
            device = next(self.group.shared.parameters()).device
            groups = self.group.shared(windows.to(device), keys)
        scored = {}  # task key -> (its rows in the batch, ascending; their log-probabilities)
        for key, rows, logits in groups:
            task = next(r.task for r, _, _ in batch if r.task.key == key)
            scored[key] = rows.cpu(), task.classifier.task.log_probabilities(logits.float().double()).cpu()
        row = 0
        for request, start, stop in batch:  # a request's windows are consecutive rows of its task
            rows, log_probs = scored[request.task.key]
            at = int(torch.searchsorted(rows, row))
            request.finish(start, log_probs[at:at + stop - start])
            row += stop - start


class Batcher:
    """Queues and workers for the groups of a ``TaskSet``."""

    def __init__(self, max_batch: int = 32, max_wait_ms: float = 10, max_queue: int = 1024,
                 mix_requests: bool = True):
        self.max_batch, self.max_wait_ms, self.max_queue = max_batch, max_wait_ms, max_queue
        self.mix_requests = mix_requests  # False: a batch holds one request's windows (batching off)
        self.closed = False
        self._lanes: dict[int, _Lane] = {}
        self._lock = threading.Lock()

    def submit(self, task: ServedTask, group: Group, windows: torch.Tensor) -> Future:
        """Queue ``windows [w, ...]`` of ``task`` (on ``group``); the future's result is their
        log-probabilities ``[w, classes]`` (float64, CPU). ``QueueFull`` when the queue is full;
        ``KeyError`` (here or from the future) when the task was removed meanwhile."""
        future: Future = Future()
        if len(windows) == 0:
            future.set_result(torch.empty(0, len(task.classifier.labels), dtype=torch.float64))
            return future
        with self._lock:
            lane = self._lanes.get(id(group))
            if lane is None:
                lane = self._lanes[id(group)] = _Lane(group, self)
        lane.put(_Request(task, windows, future))
        return future

    def _forget(self, lane: _Lane) -> None:
        with self._lock:
            if self._lanes.get(id(lane.group)) is lane:
                del self._lanes[id(lane.group)]

    def close(self) -> None:
        """Take no more requests; the workers finish what is queued, then stop."""
        self.closed = True
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            with lane.ready:
                lane.ready.notify_all()
        for lane in lanes:
            lane.thread.join()
