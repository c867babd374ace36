"""Device crossings checked on a CPU: a model whose outputs behave like tensors on an
accelerator (mixing them with CPU tensors raises, as CUDA does) goes through every helper
that turns model outputs into metrics or scores. The CUDA confusion-matrix crash of
``finetune``/``evaluate`` fails here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from softmoa_cli.engine.distributed import World
from softmoa_cli.engine.devices import Precision
from softmoa_cli.engine.scoring.evaluation import score_indices, window_log_probabilities
from softmoa_cli.engine.scoring.metrics import confusion_matrix


class OnAccelerator(torch.Tensor):
    """CPU values that act as if they lived on another device: an operation that mixes them
    with a plain tensor of one or more dimensions raises (0-dim tensors mix, as on CUDA);
    ``.cpu()`` and ``.to("cpu")`` bring them back as plain tensors."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        name = getattr(func, "__name__", "")
        to_cpu = name == "cpu" or (name == "to" and any(str(a) == "cpu" for a in (*args[1:], kwargs.get("device"))))
        if not to_cpu and any(type(t) is torch.Tensor and t.dim() for t in tensors):
            if any(isinstance(t, cls) for t in tensors):
                raise RuntimeError("Expected all tensors to be on the same device (accelerator and cpu)")
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        if to_cpu:  # on a real CPU .cpu() may return the tensor itself: drop the subclass explicitly
            return result.as_subclass(torch.Tensor)
        return result.as_subclass(cls) if isinstance(result, torch.Tensor) else result


class AcceleratorOutputs(nn.Module):
    """Wraps a model so its logits come back 'on the accelerator'."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).as_subclass(OnAccelerator)


def test_the_simulated_device_refuses_to_mix():
    with pytest.raises(RuntimeError, match="same device"):
        torch.arange(3).as_subclass(OnAccelerator) + torch.arange(3)
    assert type(torch.arange(3).as_subclass(OnAccelerator).cpu()) is torch.Tensor


def test_confusion_matrix_takes_predictions_on_the_accelerator():
    predicted = torch.tensor([0, 1, 1, 2]).as_subclass(OnAccelerator)
    counts = confusion_matrix(predicted, torch.tensor([0, 1, 2, 2]), 3)
    assert type(counts) is torch.Tensor and counts.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_evaluation_and_window_scores_with_accelerator_outputs():
    from helpers import toy_table

    table = toy_table()
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(48 * 32, 4))
    world = World()
    indices = np.arange(0, 40)
    expected = score_indices(plain, table, indices, 16, world, Precision("fp32", world.device))
    scored = score_indices(AcceleratorOutputs(plain), table, indices, 16, world, Precision("fp32", world.device))
    confusion = scored.metrics(per_class=True)["confusion"]
    assert type(confusion) is torch.Tensor and torch.equal(confusion, expected.metrics(per_class=True)["confusion"])
    assert type(scored.probabilities) is torch.Tensor and scored.loss == pytest.approx(expected.loss)
    scores = window_log_probabilities(AcceleratorOutputs(plain), table.batch(indices)[0], 16, world.device, table.task)
    assert type(scores) is torch.Tensor and scores.shape == (40, 4)
