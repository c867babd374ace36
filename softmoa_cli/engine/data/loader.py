"""Training batches straight from a feature cache: no audio decoding while training.

For training code::

    cache = open_cache("esc50", max_length=500)            # FeatureCache (see cache.py)
    train = np.flatnonzero(cache.fold != 1)
    loader = make_loader(cache, train, batch_size=32, shuffle=True, specaug=(24, 80), seed=0)
    for x, y in loader:                                      # x [b, max_length, mel_bins] float32, y [b] int64
        ...

Each item of the loader is a whole batch read with one sorted fancy index from the memory map
(far faster than clip by clip). SpecAugment masks (torchaudio ``FrequencyMasking`` /
``TimeMasking``, masked values 0, the normalised mean) are drawn per clip from a generator
seeded by ``seed`` and the batch's clips, so a run is repeatable.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .cache import FeatureCache, open_cache

__all__ = ["CacheDataset", "FeatureCache", "make_loader", "open_cache", "spec_augment"]


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


class CacheDataset(Dataset):
    """The clips ``indices`` of a cache; item ``k`` (or a list of positions) gives
    ``(x [max_length, bins] or [b, max_length, bins] float32, y [] or [b] int64)``."""

    def __init__(self, cache: FeatureCache, indices: Sequence[int] | np.ndarray,
                 specaug: tuple[int, int] | None = None, seed: int = 0):
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64)
        self.specaug = specaug if specaug and any(specaug) else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(position, (int, np.integer)):
            x, y = self[[position]]
            return x[0], y[0]
        rows = self.indices[np.asarray(position, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # a sorted read is sequential on the memory map
        x = np.empty((len(rows), *self.cache.features.shape[1:]), dtype=np.float32)
        x[order] = self.cache.features[rows[order]]
        features = torch.from_numpy(x)
        if self.specaug is not None:
            generator = torch.Generator().manual_seed(zlib.crc32(rows.tobytes(), self.seed))
            features = spec_augment(features, *self.specaug, generator)
        return features, torch.from_numpy(self.cache.labels[rows])


def make_loader(cache: FeatureCache, indices: Sequence[int] | np.ndarray, batch_size: int, shuffle: bool,
                specaug: tuple[int, int] | None = None, seed: int = 0, drop_last: bool = False,
                num_workers: int = 0) -> DataLoader:
    """Batches ``(x [b, max_length, bins] float32, y [b] int64)`` of the clips ``indices``.

    ``shuffle``: a new order every epoch from a generator seeded with ``seed``.
    ``specaug``: ``(freq_mask bins, time_mask frames)`` for training batches, None for none.
    """
    dataset = CacheDataset(cache, indices, specaug, seed)
    order = (RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle
             else SequentialSampler(dataset))
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last), batch_size=None,
                      num_workers=num_workers, persistent_workers=num_workers > 0)
