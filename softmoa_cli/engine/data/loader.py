"""Training batches read from the memory-mapped feature cache ahead of the step that needs them.

Each optimiser step's clips are one ``Read``: the clip indices and the seed of their random
crops (``FeatureTable.crop_batch``), so a batch is the same whichever process assembles it.
``batches`` reads them in order: in the training process (``workers`` 0), or in worker
processes that keep ``PREFETCH`` batches each ready ahead, into pinned memory when the batches
go to a GPU (so the copy to the device can overlap the step). The features are never loaded
whole: each read touches only its clips' rows of the memory map.

Workers are forked, so they share the table's memory maps instead of receiving a pickled copy
of them (a ``np.memmap`` pickles as its whole content); each uses one torch thread.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .table import FeatureTable

PREFETCH = 2  # batches each worker keeps ready


@dataclass(frozen=True)
class Read:
    """One optimiser step's clips: ``indices [b]`` into the table and the seed of their crops."""

    indices: np.ndarray
    crop_seed: int


class Reads(Dataset):
    """``reads[i]`` as features ``[b, *window]`` float32 and targets (``[b]`` int64 class
    ids or ``[b, classes]`` float32 multi-hot), on the CPU."""

    def __init__(self, table: FeatureTable, reads: list[Read]):
        self.table, self.reads = table, reads

    def __len__(self) -> int:
        return len(self.reads)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        read = self.reads[i]
        return self.table.crop_batch(read.indices, torch.Generator().manual_seed(read.crop_seed))


def batches(table: FeatureTable, reads: list[Read], workers: int = 0,
            pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``reads``, in order: read here (``workers`` 0) or by ``workers`` forked
    processes, ``PREFETCH`` ahead each; ``pin``: in page-locked memory (for CUDA)."""
    parallel = workers > 0
    return iter(DataLoader(Reads(table, reads), batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
                           prefetch_factor=PREFETCH if parallel else None,
                           multiprocessing_context=_fork() if parallel else None,
                           worker_init_fn=_one_thread if parallel else None))


def _fork():
    """The fork context where there is one (Linux, macOS): workers share the memory maps."""
    return multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def _one_thread(worker: int) -> None:
    """A worker's reads are numpy copies: one torch thread each, so workers do not oversubscribe the cores."""
    torch.set_num_threads(1)
