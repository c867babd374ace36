"""The resume state of a fold: everything needed to continue bit-for-bit, written atomically.

Holds the trainable tensors, optimizer and scheduler state, the gradient scaler's state (fp16
runs: its scale and growth count), the position (epoch, next optimiser step),
the epoch's running sums, the history and the best epoch's tensors. Random draws are
derived from (seed, fold, epoch, step) (see ``loop.step_seed``), so no generator state
needs saving: a resumed step draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..fsutil import atomic_write_bytes

STATE_FILE = "state.pt"


def save_state(directory: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(directory / STATE_FILE, buffer.getvalue())


def load_state(directory: Path) -> dict | None:
    """The saved state, or None when the fold has not saved one yet."""
    path = directory / STATE_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def clear_state(directory: Path) -> None:
    (directory / STATE_FILE).unlink(missing_ok=True)
