"""How much a frozen backbone's features say about a labelled table: a logistic regression on
the mean of its output tokens, trained on the table's training clips, scored on its test clips."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.table import FeatureTable
from ..models.ast import AST


@torch.no_grad()
def pooled_features(ast: AST, table: FeatureTable, indices: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """``[len(indices), d]``: the mean of the AST's normalised output tokens per clip (first window)."""
    ast.eval()
    parts = [ast.forward_features(table.batch(indices[i:i + batch_size])[0]).mean(1)
             for i in range(0, len(indices), batch_size)]
    return torch.cat(parts)


def linear_probe_accuracy(ast: AST, table: FeatureTable, steps: int = 300, seed: int = 0) -> float:
    """Test accuracy of a logistic regression (Adam, full batch, ``steps`` steps, features
    standardised on the training clips) on ``pooled_features``."""
    split = np.asarray(table.split)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    x_train, x_test = pooled_features(ast, table, train), pooled_features(ast, table, test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train, y_test = torch.as_tensor(table.labels[train]), torch.as_tensor(table.labels[test])
    torch.manual_seed(seed)
    classifier = torch.nn.Linear(x_train.shape[1], len(table.label_names))
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(classifier(x_train), y_train).backward()
        optimizer.step()
    with torch.no_grad():
        return float((classifier(x_test).argmax(1) == y_test).float().mean())
