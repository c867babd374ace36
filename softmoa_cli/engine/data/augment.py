"""SpecAugment on a batch of features, drawn from a given generator (repeatable, resumable)."""

from __future__ import annotations

import torch


def spec_augment(x: torch.Tensor, freq_mask: int, time_mask: int, generator: torch.Generator) -> torch.Tensor:
    """``x [b, frames, bins]`` -> the same with one frequency mask (up to ``freq_mask`` bins) and
    one time mask (up to ``time_mask`` frames) per clip, drawn from ``generator``."""
    from torchaudio.transforms import FrequencyMasking, TimeMasking

    image = x.transpose(1, 2).unsqueeze(1)  # [b, 1, bins, frames]
    state = torch.get_rng_state()
    torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))  # torchaudio draws from the global RNG
    try:
        if freq_mask:
            image = FrequencyMasking(freq_mask, iid_masks=True)(image)
        if time_mask:
            image = TimeMasking(time_mask, iid_masks=True)(image)
    finally:
        torch.set_rng_state(state)
    return image.squeeze(1).transpose(1, 2)
