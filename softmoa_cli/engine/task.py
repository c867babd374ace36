"""The task a run learns: one label per clip (single-label) or a set of labels per clip (multi-label).

A ``Task`` owns everything that differs between the two, so that the rest of the engine asks it
instead of branching: how labels are held (class ids ``[n]``, or multi-hot rows ``[n, classes]``),
the outputs' activation, the training loss and what a training step counts as a hit, the score
that picks the best epoch, the metrics of a scored set of clips with their summary over folds and
their per-class rows, the decision thresholds (tuned on the validation clips, per label), which
labels a prediction marks, and the columns a report shows. The task of data is read from its
labels (``task_of``), of a saved run or model from its name (``task_named``). A third task (say,
regression) is one more class registered in ``TASKS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the methods that compute with it: the data registry reads a data
# set's task while a command's flags are checked, before torch loads.


class Task:
    """What a task decides; ``SingleLabel`` and ``MultiLabel`` say how."""

    name: ClassVar[str]  # as run files store it
    title: ClassVar[str]  # as sentences say it
    metric: ClassVar[str]  # the validation score that picks the best epoch
    summary: ClassVar[tuple[str, ...]]  # the test metrics summarised over folds (mean and std)
    activation: ClassVar[str]  # of the outputs: softmax or sigmoid
    hit: ClassVar[str]  # what a training step's count of correct clips measures
    min_labels: ClassVar[int]  # fewest labels a data set of this task can be learned with
    marks: ClassVar[bool]  # whether a prediction marks the labels at or above their thresholds
    clip_share: ClassVar[bool]  # whether one test clip is worth 1 / clips of the score (accuracy is)
    picture: ClassVar[str]  # the figure ``evaluate`` draws of a report
    columns: ClassVar[tuple[tuple[str, str, int], ...]]  # test metrics shown: (header, key, digits); the first: metric
    class_columns: ClassVar[tuple[tuple[str, str, int], ...]]  # per-class rows shown: (header, key, digits)
    tags: ClassVar[tuple[str, ...]]  # a model card's tags for the task
    described: ClassVar[str]  # what a model card says of the outputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ------------------------------------------------------------ labels

    def holds(self, labels: np.ndarray) -> bool:
        """Whether ``labels`` are held in this task's form."""
        raise NotImplementedError

    def rows(self, labels: np.ndarray, classes: int) -> np.ndarray:
        """``labels`` in this task's form (class ids or multi-hot rows)."""
        raise NotImplementedError

    def targets(self, labels: np.ndarray) -> torch.Tensor:
        """The loss's targets of ``labels``: int64 class ids ``[n]`` or float32 rows ``[n, classes]``."""
        raise NotImplementedError

    def present(self, labels: np.ndarray) -> set[int]:
        """The label ids with at least one clip among ``labels`` (multi-label: a positive clip)."""
        raise NotImplementedError

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """One label per clip ``[n]``, by which a split is stratified."""
        raise NotImplementedError

    def counts(self, labels: np.ndarray, classes: int) -> np.ndarray:
        """Clips per label ``[classes]`` int64."""
        raise NotImplementedError

    def vectors(self, labels: torch.Tensor, classes: int) -> torch.Tensor:
        """Labels as float label vectors ``[n, classes]`` (one-hot, or the multi-hot rows), on their device."""
        raise NotImplementedError

    def encode(self, labels: np.ndarray) -> list[list[int]]:
        """Each clip's label ids, for a file (a feature cache's index)."""
        raise NotImplementedError

    def decode(self, ids: list[list[int]], classes: int) -> np.ndarray:
        """Labels in this task's form from each clip's label ids (``encode``'s inverse)."""
        raise NotImplementedError

    def unlabelled(self, labels: np.ndarray) -> np.ndarray:
        """Which clips have no label to learn from ``[n]`` bool (multi-label: an empty set)."""
        return np.zeros(len(labels), dtype=bool)

    # ------------------------------------------------------------ outputs and training

    def log_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[b, classes]`` -> log-probabilities ``[b, classes]``."""
        raise NotImplementedError

    def losses(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Per-clip training loss ``[b]`` of ``logits`` against ``target`` (ids, rows or mixed
        label vectors), each class weighted by ``weight [classes]`` when given."""
        raise NotImplementedError

    def hits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """How many of the clips a training step got right (``hit``), a scalar tensor."""
        raise NotImplementedError

    # ------------------------------------------------------------ a scored set of clips

    def clip_loss(self, probabilities: torch.Tensor, targets: torch.Tensor) -> float:
        """The mean loss of clip probabilities ``[n, classes]`` (float64) against their targets."""
        raise NotImplementedError

    def metrics(self, probabilities: torch.Tensor, targets: torch.Tensor, thresholds: list[float] | None = None,
                per_class: bool = False) -> dict:
        """The task's metrics of scored clips; ``per_class`` adds ``per_class`` rows."""
        raise NotImplementedError

    def tune_thresholds(self, probabilities: torch.Tensor, targets: torch.Tensor) -> list[float] | None:
        """Decision thresholds learned from validation clips (None: the task has none)."""
        return None

    def merge_classes(self, folds: list[dict]) -> dict:
        """The per-class rows of every fold's metrics (``metrics(per_class=True)``, with the
        fold's ``probabilities`` and ``targets``) as one report part: ``per_class`` and what else
        the task's picture needs."""
        raise NotImplementedError

    # ------------------------------------------------------------ predictions

    def marked(self, scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor | None:
        """Which labels a prediction of ``scores [classes]`` marks, bool ``[classes]`` (None: the
        task marks none, ``marks`` False)."""
        return None

    def active(self, scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
        """Which labels hold along a timeline: ``scores [s, classes]`` -> bool ``[s, classes]``."""
        raise NotImplementedError

    # ------------------------------------------------------------ chance

    def chance(self, classes: int, test_labels) -> tuple[float, str] | None:
        """The score (a share) of predictions that ignore the audio, with the words that say so;
        ``test_labels()`` gives each fold's test labels when the task needs them (None: not
        known, and then neither is chance)."""
        raise NotImplementedError


class SingleLabel(Task):
    """One label per clip: softmax outputs, cross-entropy, accuracy; a confusion matrix."""

    name = "singlelabel"
    title = "single-label"
    metric = "accuracy"
    summary = ("accuracy", "macro_f1")
    activation = "softmax"
    hit = "accuracy"
    min_labels = 2
    marks = False
    clip_share = True
    picture = "confusion"
    columns = (("accuracy", "accuracy", 4), ("macro-F1", "macro_f1", 4))
    class_columns = (("precision", "precision", 4), ("recall", "recall", 4), ("F1", "f1", 4), ("clips", "support", 0))
    tags = ()
    described = "single-label, softmax"

    def holds(self, labels):
        return labels.ndim == 1

    def rows(self, labels, classes):
        return labels

    def targets(self, labels):
        import torch

        return torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def present(self, labels):
        return set(np.asarray(labels).tolist())

    def strata(self, labels):
        return np.asarray(labels)

    def counts(self, labels, classes):
        return np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)

    def vectors(self, labels, classes):
        import torch.nn.functional as F

        return F.one_hot(labels.long(), classes).float()

    def encode(self, labels):
        return [[int(label)] for label in labels]

    def decode(self, ids, classes):
        if any(len(one) != 1 for one in ids):
            raise ValueError("a single-label clip has exactly one label")
        return np.array([one[0] for one in ids], dtype=np.int64)

    def log_probabilities(self, logits):
        return logits.log_softmax(dim=-1)

    def losses(self, logits, target, weight):
        import torch.nn.functional as F

        return F.cross_entropy(logits, target, weight=weight, reduction="none")  # w[y] * nll; mixed: -sum w p log q

    def hits(self, logits, labels):
        return (logits.detach().argmax(-1) == labels).sum()

    def clip_loss(self, probabilities, targets):
        return float(-probabilities.gather(1, targets[:, None]).log().mean())

    def metrics(self, probabilities, targets, thresholds=None, per_class=False):
        from .scoring.metrics import accuracy, confusion_matrix, macro_f1
        from .scoring.metrics import per_class as class_rows

        confusion = confusion_matrix(probabilities.argmax(-1), targets, probabilities.shape[1])
        found = {"accuracy": accuracy(confusion), "macro_f1": macro_f1(confusion)}
        return found | ({"per_class": class_rows(confusion), "confusion": confusion} if per_class else {})

    def merge_classes(self, folds):
        from .scoring.metrics import per_class as class_rows

        confusion = sum(fold["confusion"] for fold in folds)  # [classes, classes], summed over folds
        return {"per_class": class_rows(confusion), "confusion": confusion.tolist()}

    def chance(self, classes, test_labels):
        return 1 / classes, f"chance: 1/{classes} = {100 / classes:.1f}%"

    def active(self, scores, thresholds):
        import torch

        top = scores.argmax(dim=1)
        active = torch.zeros_like(scores, dtype=torch.bool)
        rows = torch.arange(len(scores))
        active[rows, top] = scores[rows, top] >= thresholds[top]
        return active


class MultiLabel(Task):
    """A set of labels per clip: sigmoid outputs, binary cross-entropy, mAP; a threshold per label."""

    name = "multilabel"
    title = "multi-label"
    metric = "mAP"
    summary = ("mAP", "micro_f1", "macro_f1", "d_prime")
    activation = "sigmoid"
    hit = "top-1 hit"
    min_labels = 1
    marks = True
    clip_share = False
    picture = "ap"
    columns = (("mAP", "mAP", 4), ("micro-F1", "micro_f1", 4), ("macro-F1", "macro_f1", 4), ("d′", "d_prime", 3))
    class_columns = (("AP", "ap", 4), ("F1", "f1", 4), ("positives", "support", 0))
    tags = ("multi-label",)
    described = ("multi-label: a sigmoid score per label, each marked at or above its own threshold, tuned on the "
                 "validation clips and kept in `adapter.json`; F1 counts a label as predicted at or above it")

    def holds(self, labels):
        return labels.ndim == 2

    def rows(self, labels, classes):
        if labels.ndim == 2:
            return labels
        rows = np.zeros((len(labels), classes), dtype=np.uint8)
        rows[np.arange(len(labels)), labels] = 1
        return rows

    def targets(self, labels):
        import torch

        return torch.from_numpy(np.asarray(labels, dtype=np.float32))

    def present(self, labels):
        return set(np.flatnonzero(np.asarray(labels).any(axis=0)).tolist())

    def strata(self, labels):
        return np.asarray(labels).argmax(axis=1)  # a clip's first label

    def counts(self, labels, classes):
        return np.asarray(labels, dtype=np.int64).sum(axis=0)

    def vectors(self, labels, classes):
        return labels.float()

    def encode(self, labels):
        return [np.flatnonzero(row).tolist() for row in labels]

    def decode(self, ids, classes):
        rows = np.zeros((len(ids), classes), dtype=np.uint8)
        for row, one in enumerate(ids):
            rows[row, one] = 1
        return rows

    def unlabelled(self, labels):
        return ~np.asarray(labels).any(axis=1)

    def log_probabilities(self, logits):
        import torch.nn.functional as F

        return F.logsigmoid(logits)

    def losses(self, logits, target, weight):
        import torch.nn.functional as F

        # per clip: binary cross-entropy (each class's term times its weight) averaged over classes
        return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none").mean(-1)

    def hits(self, logits, labels):
        return labels.gather(1, logits.detach().argmax(-1, keepdim=True)).sum()  # the top label is one of the clip's

    def clip_loss(self, probabilities, targets):
        import torch.nn.functional as F

        return float(F.binary_cross_entropy(probabilities, targets.double()))

    def metrics(self, probabilities, targets, thresholds=None, per_class=False):
        import torch

        from .scoring.metrics import multi_label_metrics

        found = multi_label_metrics(probabilities, targets,
                                    None if thresholds is None else torch.tensor(thresholds, dtype=torch.float64))
        rows = found.pop("per_class")
        return found | ({"per_class": rows} if per_class else {})

    def tune_thresholds(self, probabilities, targets):
        from .scoring.metrics import tune_thresholds

        return tune_thresholds(probabilities, targets)

    def merge_classes(self, folds):
        """AP and F1 averaged over the folds where a label has positives (None where none has),
        positive clips summed."""
        merged = []
        for rows in zip(*(fold["per_class"] for fold in folds)):
            mean = {name: [row[name] for row in rows if row[name] is not None] for name in ("ap", "f1")}
            merged.append({"ap": sum(mean["ap"]) / len(mean["ap"]) if mean["ap"] else None,
                           "f1": sum(mean["f1"]) / len(mean["f1"]) if mean["f1"] else None,
                           "support": sum(row["support"] for row in rows)})
        return {"per_class": merged}

    def marked(self, scores, thresholds):
        return scores >= thresholds

    def active(self, scores, thresholds):
        return scores >= thresholds

    def chance(self, classes, test_labels):
        """A random ranking of a label's clips has an AP of about the share of them that carry it:
        per fold the mean over the labels present in its test clips of their positive rate there,
        averaged over the folds (as mAP is)."""
        folds = test_labels()
        if not folds:
            return None
        rates = [np.asarray(labels, dtype=float).mean(axis=0) for labels in folds]
        chance = float(np.mean([rate[rate > 0].mean() if (rate > 0).any() else 0.0 for rate in rates]))
        return chance, f"chance mAP ≈ {100 * chance:.1f}% (mean positive rate)"


TASKS: dict[str, Task] = {task.name: task for task in (SingleLabel(), MultiLabel())}
SINGLE, MULTI = TASKS["singlelabel"], TASKS["multilabel"]


def task_named(name: str | None) -> Task:
    """The task a run or model file names (None, as files written before tasks were named: single-label)."""
    return TASKS[name or SINGLE.name]


def task_of(labels: np.ndarray) -> Task:
    """The task whose form ``labels`` are held in."""
    return next(task for task in TASKS.values() if task.holds(labels))
