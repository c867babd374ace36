"""The scores (engine/scoring/metrics.py), the multi-label ones against independent, loop-based
implementations written here from the definitions (and hand-computed values): AP as scikit-learn
defines it (ties share one precision), ROC AUC over every positive/negative pair, AST's d-prime
through the standard library's normal distribution, F1 at thresholds, and threshold tuning on a
constructed case."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from softmoa_cli.engine.scoring.metrics import (average_precision, d_prime, f1_at, mean_average_precision,
                                              multi_label_metrics, roc_auc, tune_thresholds)


def loop_ap(scores: list[float], targets: list[int]) -> float | None:
    """Mean over positives of (positives scoring >= it) / (clips scoring >= it)."""
    positives = [s for s, t in zip(scores, targets) if t]
    if not positives:
        return None
    precisions = []
    for s in positives:
        above = [t for other, t in zip(scores, targets) if other >= s]
        precisions.append(sum(above) / len(above))
    return sum(precisions) / len(precisions)


def pair_auc(scores: list[float], targets: list[int]) -> float:
    pos = [s for s, t in zip(scores, targets) if t]
    neg = [s for s, t in zip(scores, targets) if not t]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def loop_f1(predicted: list[bool], truth: list[bool]) -> tuple[int, int, int]:
    tp = sum(p and t for p, t in zip(predicted, truth))
    fp = sum(p and not t for p, t in zip(predicted, truth))
    fn = sum(t and not p for p, t in zip(predicted, truth))
    return tp, fp, fn


def random_case(seed: int, n: int = 40, classes: int = 5, levels: int = 6):
    """Scores on a coarse grid (many ties) and targets with a class lacking positives."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n, classes), generator=g).double() / levels
    targets = (torch.rand(n, classes, generator=g) < 0.35).int()
    targets[:, -1] = 0
    return scores, targets


def test_average_precision_on_known_values_with_ties():
    # Ranked: 0.9 (+), 0.8 (+ and -, tied), 0.3 (-), 0.1 (+): precisions 1, 2/3, 3/5.
    scores, targets = torch.tensor([0.9, 0.8, 0.8, 0.3, 0.1]), torch.tensor([1, 0, 1, 0, 1])
    assert average_precision(scores, targets) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)
    assert average_precision(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1, 0, 1])) == pytest.approx(2 / 3)
    assert average_precision(torch.tensor([0.2, 0.7]), torch.tensor([0, 0])) is None
    assert average_precision(torch.tensor([0.9, 0.1, 0.2]), torch.tensor([1, 0, 0])) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_ap_auc_and_map_match_the_loop_definitions(seed):
    scores, targets = random_case(seed)
    aps = []
    for c in range(scores.shape[1]):
        s, t = scores[:, c].tolist(), targets[:, c].tolist()
        expected = loop_ap(s, t)
        got = average_precision(scores[:, c], targets[:, c])
        assert (got is None) == (expected is None) and (got is None or got == pytest.approx(expected, abs=1e-12))
        if expected is not None:
            aps.append(expected)
            assert roc_auc(scores[:, c], targets[:, c]) == pytest.approx(pair_auc(s, t), abs=1e-12)
    assert roc_auc(scores[:, -1], targets[:, -1]) is None  # no positives
    report = multi_label_metrics(scores, targets)
    assert report["mAP"] == pytest.approx(sum(aps) / len(aps), abs=1e-12)  # classes without positives left out
    assert mean_average_precision(scores, targets) == report["mAP"]
    assert report["per_class"][-1] == {"ap": None, "f1": None, "support": 0}
    assert [row["support"] for row in report["per_class"]] == targets.sum(0).tolist()
    aucs = [pair_auc(scores[:, c].tolist(), targets[:, c].tolist()) for c in range(scores.shape[1] - 1)]
    assert report["d_prime"] == pytest.approx(NormalDist().inv_cdf(sum(aucs) / len(aucs)) * math.sqrt(2), abs=1e-9)


def test_d_prime_is_asts_formula():
    assert d_prime(0.5) == 0.0
    for auc in (0.6, 0.75, 0.9, 0.97, 0.3):
        assert d_prime(auc) == pytest.approx(NormalDist().inv_cdf(auc) * math.sqrt(2), abs=1e-9)
    # A unit shift between two unit normals gives AUC Phi(1 / sqrt 2) and d' = 1.
    assert d_prime(NormalDist().cdf(1 / math.sqrt(2))) == pytest.approx(1.0, abs=1e-9)
    assert math.isfinite(d_prime(1.0)) and d_prime(1.0) == pytest.approx(-d_prime(0.0))


@pytest.mark.parametrize("seed", range(3))
def test_f1_at_thresholds_matches_counts(seed):
    scores, targets = random_case(seed)
    thresholds = torch.tensor([0.3, 0.5, 0.0, 1.0, 0.5])
    got = f1_at(scores, targets, thresholds)
    totals, per_class = [0, 0, 0], []
    for c in range(scores.shape[1]):
        predicted = [s >= thresholds[c].item() for s in scores[:, c].tolist()]
        counts = loop_f1(predicted, [bool(t) for t in targets[:, c].tolist()])
        totals = [a + b for a, b in zip(totals, counts)]
        tp, fp, fn = counts
        per_class.append(2 * tp / (2 * tp + fp + fn) if tp + fn else None)
    tp, fp, fn = totals
    assert got["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["per_class"] == pytest.approx(per_class[:-1] + [None]) and per_class[-1] is None
    assert got["macro_f1"] == pytest.approx(sum(per_class[:-1]) / 4)


def test_tuned_thresholds_on_a_constructed_case():
    # Class 0, by descending score: + + - + - - +. F1 when predicting the top k: 2/5, 4/6, 4/7,
    # 6/8 (best), 6/9, 6/10, 8/11: the threshold lies halfway between 0.6 and the next score 0.3.
    column = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1])
    labels = torch.tensor([1, 1, 0, 1, 0, 0, 1])
    # Class 1: perfectly separated, positives above 0.4; class 2: no positives.
    second = torch.tensor([0.95, 0.4, 0.5, 0.45, 0.1, 0.2, 0.3])
    scores = torch.stack([column, second, column], dim=1).double()
    targets = torch.stack([labels, torch.tensor([1, 0, 1, 1, 0, 0, 0]), torch.zeros(7, dtype=torch.long)], dim=1)
    thresholds = tune_thresholds(scores, targets)
    assert thresholds == pytest.approx([0.45, 0.425, 0.5])
    report = multi_label_metrics(scores, targets, torch.tensor(thresholds))
    assert [row["f1"] for row in report["per_class"]] == pytest.approx([0.75, 1.0, None])
    # A tie: predicting the top clip and predicting all four both give F1 2/3; the higher cut wins.
    tied = tune_thresholds(torch.tensor([[0.9], [0.6], [0.5], [0.2]]), torch.tensor([[1], [0], [0], [1]]))
    assert tied == pytest.approx([0.75])


@pytest.mark.parametrize("seed", range(5))
def test_tuned_thresholds_reach_the_best_f1_of_any_threshold(seed):
    scores, targets = random_case(seed, n=30)
    scores = scores + torch.rand(scores.shape, generator=torch.Generator().manual_seed(seed)) * 0.01 * (seed % 2)
    tuned = tune_thresholds(scores, targets)
    reached = f1_at(scores, targets, torch.tensor(tuned))["per_class"]
    for c in range(scores.shape[1] - 1):
        truth = [bool(t) for t in targets[:, c].tolist()]
        best = 0.0
        for threshold in [*scores[:, c].tolist(), 2.0]:  # every cut, and predicting nothing
            tp, fp, fn = loop_f1([s >= threshold for s in scores[:, c].tolist()], truth)
            best = max(best, 2 * tp / (2 * tp + fp + fn))
        assert reached[c] == pytest.approx(best, abs=1e-12)
    assert tuned[-1] == 0.5
