"""Where tensors run: the device a name means (``auto``: CUDA when present), waiting for the
work queued on it, and the autocast context of a precision. Training, scoring, predict and serving all go through these two, so a
device or dtype crossing has one home."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means (``auto``: CUDA when present, else the CPU); a SoftmoaError
    naming it when it is CUDA on a machine without."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import SoftmoaError

        raise SoftmoaError(f"`device` {name}: CUDA is not available on this machine; use cpu")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; the CPU needs no wait)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Precision:
    """Autocast context for the configured precision ("auto": bf16 on CUDA, fp32 on CPU; bf16 or
    fp16: autocast to that type; fp32: none)."""

    def __init__(self, name: str, device: torch.device):
        chosen = "bf16" if name == "auto" and device.type == "cuda" else name
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(chosen)  # None: fp32
        self.device_type = device.type

    def __call__(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
