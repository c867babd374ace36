"""The check every export passes before it is published: its logits against the run's torch
model on the same feature batches."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.features import FeatureConfig
from ..errors import SoftmoaError

TOLERANCE = 1e-4  # the largest |logit difference| an export may show
CHECK_BATCHES = (1, 4)  # windows per checked batch: one, and several (the batch axis is dynamic)


def check_inputs(features: FeatureConfig, seed: int = 0) -> list[torch.Tensor]:
    """Feature batches ``[b, *window]`` (``features.window_shape``) for b in CHECK_BATCHES: seeded
    normal values of std 0.5, the spread of AST-normalised and Whisper log-mels and of a quiet
    waveform."""
    generator = torch.Generator().manual_seed(seed)
    return [0.5 * torch.randn(b, *features.window_shape, generator=generator) for b in CHECK_BATCHES]


def largest_difference(reference: torch.nn.Module, exported: Callable[[torch.Tensor], torch.Tensor],
                       inputs: list[torch.Tensor]) -> float:
    """max |exported(x) - reference(x)| over the logits ``[b, classes]`` of every batch x."""
    with torch.inference_mode():
        return max(float((exported(x).float() - reference(x).float()).abs().max()) for x in inputs)


def require_close(difference: float, what: str, source: str) -> None:
    """Refuse an export whose logits differ from the run's by more than TOLERANCE."""
    if not difference <= TOLERANCE:
        raise SoftmoaError(f"{source}: the {what} gives logits up to {difference:.2e} away from the run's torch model "
                           f"(allowed {TOLERANCE:g}); nothing was written. Try another torch or onnxruntime version, "
                           "and report it with the run's adapter.json")
