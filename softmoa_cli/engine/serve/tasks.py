"""The tasks a server carries: runs loaded as tasks, grouped so that tasks on the same backbone
and window share one copy of its frozen layers (``shared.SharedBackbone``).

``TaskSet.add(name, run)`` loads a finetune run (a folder or a pushed run's hub id) and puts it
on a group whose backbone holds the same frozen weights (compared tensor by tensor, so runs on
copies of one backbone share it) at its window length, with the same front end. A task that cannot join one (a ``full`` run, which is its own backbone; a weighted
layer sum) gets a group of its own. ``remove`` drops a task; an emptied group goes.

Memory: a task on a shared backbone costs its parts and head (kilobytes to a few megabytes);
loading it builds the run's whole model for a moment, and ``add`` hands that copy's memory back
to the system once the parts have joined (``release_freed_memory``).
"""

from __future__ import annotations

import ctypes
import gc
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..classifier import Classifier
from ..data.features import FeatureConfig
from ..errors import SoftmoaError
from ..registry import unknown_name
from ..runs.run import Run, load_backbone
from .shared import NotShared, SharedBackbone

NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ServedTask:
    """One task: its ``name`` (in routes), the ``key`` its parts have in its group, its
    ``classifier`` facts (labels, task type, thresholds, features; the model itself lives in the
    group), its run's ``method`` and ``backbone`` reference, and its trained parameters."""

    name: str
    key: str
    classifier: Classifier
    method: str
    backbone: str
    trainable_params: int
    source: str

    def describe(self) -> dict:
        """What ``GET /v1/tasks`` says of the task."""
        features = self.classifier.features
        return {"name": self.name, "labels": self.classifier.labels, "task": self.classifier.task.name,
                "method": self.method, "backbone": self.backbone, "source": self.source,
                "window_seconds": features.max_length / 100, "trainable_params": self.trainable_params}


@dataclass
class Group:
    """Tasks sharing one backbone: its ``shared`` model, the ``signature`` a task must have to
    join (the shape of its windows), its tasks by key, the lock a forward or a change of its
    tasks holds, and whether it is ``served`` still (False once its last task is removed: its
    batcher worker then stops and lets the backbone go)."""

    shared: SharedBackbone
    signature: tuple
    tasks: dict[str, ServedTask] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: bool = True


def release_freed_memory() -> None:
    """Hand freed heap memory back to the system. Loading a task builds the run's whole model (a
    full copy of its backbone, to compare with the group's) and keeps only its PETL parts and
    head; glibc keeps freed blocks below its mmap threshold for reuse, and without this the
    tasks loaded left them behind (an AST-base server held 1.30x the memory with 8 tasks as with
    1, 0.3 GB more; benchmarks/RESULTS.md). A no-op where the C library has no ``malloc_trim``
    (not glibc)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _signature(features: FeatureConfig) -> tuple:
    """What tasks on one backbone share besides its weights: the front end and window shape."""
    return (features.kind, features.sample_rate, features.num_mel_bins, features.max_length)


class TaskSet:
    """The tasks being served, by name, and the groups that hold their models on ``device``;
    ``quantize`` ``"int8"``: every group's frozen Linears in int8 (``quantize.quantize_frozen``;
    the CPU only), the tasks' parts and heads float."""

    def __init__(self, device: str = "cpu", quantize: str | None = None):
        from ..devices import resolve_device

        if quantize is not None and resolve_device(device).type != "cpu":
            raise SoftmoaError(f"`quantize` {quantize} serves on the CPU (its kernels are CPU only); drop `device` "
                               f"{device} or serve in float there")
        self.device, self.quantize = device, quantize
        self.groups: list[Group] = []
        self._by_name: dict[str, tuple[ServedTask, Group]] = {}
        self._lock = threading.Lock()  # adding and removing tasks, one at a time
        self._count = 0

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> tuple[ServedTask, Group]:
        """The task ``name`` and its group; a SoftmoaError naming the closest task otherwise."""
        found = self._by_name.get(name)
        if found is None:
            raise SoftmoaError(unknown_name("task", name, self.names or ["(none)"]))
        return found

    def add(self, name: str | None, reference: str | Path, fold: int | None = None) -> ServedTask:
        """Load the run ``reference`` (its first fold, or ``fold``) as the task ``name`` (None:
        the run's folder name, or its hub id's last part)."""
        try:
            return self._add(name, reference, fold)
        finally:
            release_freed_memory()  # the run's own copy of the backbone, dropped once its parts joined

    def _add(self, name: str | None, reference: str | Path, fold: int | None) -> ServedTask:
        run = Run.open(reference)
        name = name or run.name
        if not NAME.fullmatch(name):
            raise SoftmoaError(f"task name {name!r}: use letters, digits, '-' and '_' (it is part of a URL)")
        with self._lock:
            if name in self._by_name:
                raise SoftmoaError(f"task {name!r} is served already; remove it first or choose another name")
            self._count += 1
            key = f"t{self._count}"
            info, directory = run.adapter(fold), run.fold_dir(fold)
            model = run.model(fold).to(self.device)
            classifier = Classifier(model, info.labels, info.task, info.features, info.thresholds,
                                    f"run {run.reference}")
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            task = ServedTask(name, key, replace(classifier, model=None), info.method["name"], info.backbone,
                              trained, run.reference)
            group = self._join(key, model, _signature(info.features), info, directory)
            if self.quantize is not None:
                from ..quantize import quantize_frozen

                with group.lock:
                    quantize_frozen(group.shared)  # the frozen Linears not in int8 yet; the task's parts stay float
            group.tasks[key] = task
            self._by_name[name] = (task, group)
            return task

    def remove(self, name: str) -> None:
        task, group = self.get(name)
        with self._lock, group.lock:
            group.shared.remove(task.key)
            del group.tasks[task.key]
            del self._by_name[name]
            if not group.tasks:
                self.groups.remove(group)
                group.served = False
        release_freed_memory()

    def _join(self, key: str, model, signature: tuple, info, directory: Path) -> Group:
        """The group the task's ``model`` joins: an existing one of its ``signature``, a new one on
        its pristine backbone, or (a model that changed its backbone) one of its own."""
        for group in self.groups:
            if group.signature == signature:
                with group.lock:
                    try:
                        group.shared.add(key, model)
                        return group
                    except NotShared:
                        continue
        group = None
        if info.method["name"] != "full":
            backbone = load_backbone(info.backbone, directory).model
            if backbone.config.max_length != info.features.max_length:
                backbone.set_max_length(info.features.max_length)
            shared = SharedBackbone(backbone.to(self.device))
            try:
                shared.add(key, model)
                group = Group(shared, signature)
            except NotShared:
                pass
        if group is None:
            group = Group(SharedBackbone.alone(key, model), signature + (key,))  # nothing else joins it
        self.groups.append(group)
        return group
