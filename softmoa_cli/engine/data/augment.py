"""SpecAugment on a batch of features on any device, its masks drawn on the CPU from a given
generator (repeatable, resumable, the same masks on every device).

A waveform batch ``[b, samples]`` has no frequency axis: it takes the time mask only, in frames
of 10 ms (160 samples set to 0, the silence of a normalised window too), and no frequency mask.

The draws are torchaudio's ``FrequencyMasking`` / ``TimeMasking`` with ``iid_masks`` (one mask
per clip: width ``uniform(0, max) `` truncated, start ``uniform(0, size - width)`` truncated),
taken from a CPU generator seeded once from ``generator``, so a CUDA batch is masked exactly as
the same batch on the CPU, and no global random state is touched.
"""

from __future__ import annotations

import torch

from .frontends import HOP


def spec_augment(x: torch.Tensor, freq_mask: int, time_mask: int, generator: torch.Generator) -> torch.Tensor:
    """``x [b, frames, bins]`` (any device) -> the same with one frequency mask (up to
    ``freq_mask`` bins) and one time mask (up to ``time_mask`` frames) per clip set to 0; a
    waveform ``x [b, samples]`` (samples a multiple of 160) -> its time mask alone."""
    draws = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator)))
    if x.dim() == 2:
        return _mask(x.view(len(x), -1, HOP), time_mask, 1, draws).view_as(x) if time_mask else x
    if freq_mask:
        x = _mask(x, freq_mask, 2, draws)
    if time_mask:
        x = _mask(x, time_mask, 1, draws)
    return x


def _mask(x: torch.Tensor, widest: int, axis: int, draws: torch.Generator) -> torch.Tensor:
    """Zero a run of ``[start, start + width)`` along ``axis`` (1: frames, 2: bins) of each clip;
    width and start drawn (float32, CPU) in torchaudio's order: all widths, then all starts."""
    size = x.shape[axis]
    width = torch.rand(len(x), generator=draws) * widest  # [b]
    start = (torch.rand(len(x), generator=draws) * (size - width)).long()  # [b]
    positions = torch.arange(size)
    inside = (positions >= start[:, None]) & (positions < (start + width.long())[:, None])  # [b, size]
    shape = [len(x), 1, 1]
    shape[axis] = size
    return x.masked_fill(inside.view(shape).to(x.device), 0.0)
