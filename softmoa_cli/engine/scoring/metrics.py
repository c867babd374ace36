"""Classification metrics: single-label ones derived from one confusion matrix (rows: true,
columns: predicted); multi-label ones from clip scores per class (AP, AUC, d-prime, F1 at
thresholds, threshold tuning)."""

from __future__ import annotations


import torch


def confusion_matrix(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``predicted, target [n]`` class ids on any devices -> counts ``[classes, classes]`` (int64, CPU)."""
    flat = target.long().cpu() * num_classes + predicted.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def accuracy(confusion: torch.Tensor) -> float:
    total = int(confusion.sum())
    return float(confusion.diag().sum()) / total if total else 0.0


def per_class(confusion: torch.Tensor) -> list[dict]:
    """Precision, recall, F1 and support per class (0 where a denominator is 0)."""
    confusion = confusion.double()
    hits = confusion.diag()
    support = confusion.sum(dim=1)
    predicted = confusion.sum(dim=0)
    rows = []
    for tp, n_true, n_pred in zip(hits.tolist(), support.tolist(), predicted.tolist()):
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"precision": precision, "recall": recall, "f1": f1, "support": int(n_true)})
    return rows


def macro_f1(confusion: torch.Tensor) -> float:
    """Mean F1 over the classes that occur in the targets."""
    rows = [row for row in per_class(confusion) if row["support"]]
    return sum(row["f1"] for row in rows) / len(rows) if rows else 0.0


# ---------------------------------------------------------------- multi-label: scores per class
#
# ``scores, targets [n, classes]``: clip probabilities and multi-hot labels (any float or int
# dtype); a class without positive clips has no AP, AUC or F1 and is left out of macro means.


def _groups(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One class's clips by descending score, tied scores as one group: ``(group scores,
    positives ranked at or above each group, clips ranked at or above each group)``, float64."""
    order = torch.argsort(scores.double(), descending=True, stable=True)
    ranked, hits = scores.double()[order], targets.double()[order].cumsum(0)
    values, counts = torch.unique_consecutive(ranked, return_counts=True)
    ends = counts.cumsum(0) - 1  # the last clip of each group
    return values, hits[ends], (ends + 1).double()


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float | None:
    """AP of one class (``scores, targets [n]``): the mean over its positives of the precision
    at the positive's score (every clip scoring at least as high counts, so tied clips share one
    precision), scikit-learn's ``average_precision_score``. None without positives."""
    _, tp, predicted = _groups(scores, targets)
    if not len(tp) or tp[-1] == 0:
        return None
    new = torch.diff(tp, prepend=tp.new_zeros(1))  # positives in each group
    return float((new * tp / predicted).sum() / tp[-1])


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> float | None:
    """ROC AUC of one class (``scores, targets [n]``) by ranks, tied clips at their mean rank
    (Mann-Whitney); None without both positives and negatives."""
    scores, positive = scores.double().contiguous(), targets.double() > 0
    pos, neg = int(positive.sum()), int((~positive).sum())
    if not pos or not neg:
        return None
    ascending = torch.sort(scores, stable=True).values
    first = torch.searchsorted(ascending, scores, right=False).double()  # 0-based start of each tie group
    last = torch.searchsorted(ascending, scores, right=True).double()  # 0-based end, exclusive
    ranks = (first + last + 1) / 2  # mean 1-based rank of the group
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


def d_prime(auc: float) -> float:
    """AST's d-prime of an AUC: ``sqrt(2) * Phi^-1(auc)`` with ``Phi^-1(p) = sqrt(2) erfinv(2p - 1)``;
    the AUC is clipped to [1e-6, 1 - 1e-6] so that a perfect ranking gives a finite 6.72."""
    p = min(max(auc, 1e-6), 1 - 1e-6)
    return 2.0 * float(torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)))


def f1_at(scores: torch.Tensor, targets: torch.Tensor, thresholds: torch.Tensor) -> dict:
    """Labels predicted where ``scores >= thresholds`` (``[classes]``, per class): ``micro_f1``
    (over every clip and class), ``macro_f1`` (mean over classes with positives) and
    ``per_class`` F1 (None without positives)."""
    predicted, truth = scores >= thresholds.to(scores.dtype), targets > 0
    tp = (predicted & truth).sum(0).double()  # [classes]
    false = (predicted ^ truth).sum(0).double()  # false positives + false negatives
    per_class = [float(2 * t / (2 * t + f)) if p else None
                 for t, f, p in zip(tp, false, truth.any(0).tolist())]
    kept = [f for f in per_class if f is not None]
    micro = 2 * tp.sum() / (2 * tp.sum() + false.sum()) if tp.sum() + false.sum() else torch.tensor(0.0)
    return {"micro_f1": float(micro), "macro_f1": sum(kept) / len(kept) if kept else 0.0, "per_class": per_class}


def tune_thresholds(scores: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """Per class the decision threshold that maximises its F1 on these clips: among the distinct
    scores (predicting that score and above), the highest one with the best F1, moved halfway
    down to the next lower score, so a clip scoring a little under the chosen one on other data
    still counts. A class without positives gets 0.5."""
    thresholds = []
    for c in range(scores.shape[1]):
        values, tp, predicted = _groups(scores[:, c], targets[:, c])
        if not len(tp) or tp[-1] == 0:
            thresholds.append(0.5)
            continue
        best = int(torch.argmax(2 * tp / (predicted + tp[-1])))  # F1 = 2 TP / (predicted + positives); first max
        below = values[best + 1] if best + 1 < len(values) else values[best]
        thresholds.append(float((values[best] + below) / 2))
    return thresholds


def multi_label_metrics(scores: torch.Tensor, targets: torch.Tensor, thresholds: torch.Tensor | None = None) -> dict:
    """The multi-label report of clip ``scores`` against multi-hot ``targets`` (``[n, classes]``):
    ``mAP`` (macro AP over classes with positives, AudioSet's metric), ``d_prime`` (of the mean
    AUC over classes, as AST reports), micro and macro F1 at ``thresholds`` (default 0.5), and
    per class ``ap`` and ``f1`` (None without positives) and ``support`` (positive clips)."""
    classes = scores.shape[1]
    thresholds = torch.full((classes,), 0.5) if thresholds is None else torch.as_tensor(thresholds)
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(classes)]
    aucs = [a for a in (roc_auc(scores[:, c], targets[:, c]) for c in range(classes)) if a is not None]
    f1 = f1_at(scores, targets, thresholds)
    support = (targets > 0).sum(0).tolist()
    kept = [ap for ap in aps if ap is not None]
    return {"mAP": sum(kept) / len(kept) if kept else 0.0, "micro_f1": f1["micro_f1"], "macro_f1": f1["macro_f1"],
            "d_prime": d_prime(sum(aucs) / len(aucs)) if aucs else 0.0,
            "per_class": [{"ap": ap, "f1": f, "support": int(s)} for ap, f, s in zip(aps, f1["per_class"], support)]}


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP of ``scores, targets [n, classes]``: the mean AP over the classes with positives (0 when none has)."""
    return multi_label_metrics(scores, targets)["mAP"]
