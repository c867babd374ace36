"""SpecAugment on a training batch: frequency and time masks (torchaudio), drawn from torch's
global generator, which the loop seeds per step."""

from __future__ import annotations

import torch

from ...config.schema import SpecAugment


def spec_augment(x: torch.Tensor, config: SpecAugment) -> torch.Tensor:
    """``x [b, frames, bins]`` -> the same with an independent mask per clip (masked values 0,
    the normalised mean); unchanged when both masks are 0."""
    if not config.freq_mask and not config.time_mask:
        return x
    from torchaudio.transforms import FrequencyMasking, TimeMasking

    image = x.transpose(1, 2).unsqueeze(1)  # [b, 1, bins, frames]
    if config.freq_mask:
        image = FrequencyMasking(config.freq_mask, iid_masks=True)(image)
    if config.time_mask:
        image = TimeMasking(config.time_mask, iid_masks=True)(image)
    return image.squeeze(1).transpose(1, 2)
