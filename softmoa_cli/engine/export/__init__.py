"""Exporting a run's model for use outside training, in one of ``FORMATS``:

- ``onnx``: the whole classifier as one ONNX graph, windows ``[batch, *window]`` (log-mels, or
  samples of a waveform) -> logits ``[batch, classes]`` with a dynamic batch, and ``model.json`` beside it (features,
  labels, task, the window rule) for scoring audio with onnxruntime alone;
- ``standalone``: a softmoa model folder (``softmoa.json`` + ``model.safetensors``) holding the
  backbone and the trained modules, read by ``load_pretrained`` and ``predict --checkpoint``.

LoRA pairs are merged into their Linears in both. Each export is checked against the run's own
torch model before it is published (largest |logit difference| at most ``check.TOLERANCE``),
and written in a staging folder renamed into place, so a failed export leaves nothing behind.
This module imports no torch: a wrong format fails at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SoftmoaError
from ..registry import unknown_name

FORMATS = ("onnx", "standalone")


@dataclass(frozen=True)
class Exported:
    """A finished export: the ``folder`` and its ``files`` as ``(name, bytes)``, the largest
    |logit difference| against the run's torch model on the check's inputs and the most it was
    allowed, and what was exported (run, fold folder, method, LoRA pairs merged)."""

    folder: Path
    format: str
    files: list[tuple[str, int]]
    difference: float
    tolerance: float
    run: Path
    fold: str
    method: str
    merged: int


def check_format(format: str) -> None:
    """A SoftmoaError unless ``format`` is one of FORMATS."""
    if format not in FORMATS:
        raise SoftmoaError(f"`export_format`: {unknown_name('export format', format, FORMATS)}")


def export_run(run: str | Path, format: str, out: str | Path, fold: int | None = None) -> Exported:
    """Export fold ``fold`` of ``run`` (None: the first, as predict takes) to the new folder
    ``out`` in ``format``; a SoftmoaError names what is wrong (a format, the run, a failed check)."""
    check_format(format)
    import copy

    from .check import TOLERANCE
    from .merge import merge_lora
    from .onnx import write_onnx
    from .source import read_run_model
    from .staging import staged
    from .standalone import write_standalone

    writer = {"onnx": write_onnx, "standalone": write_standalone}[format]
    source = read_run_model(Path(run), fold)
    with staged(Path(out)) as folder:
        model = copy.deepcopy(source.model)
        merged = merge_lora(model)
        difference = writer(source, model, folder)
        files = sorted((f.name, f.stat().st_size) for f in folder.iterdir())
    return Exported(Path(out), format, files, difference, TOLERANCE, source.run, source.fold,
                    source.method.name, merged)
