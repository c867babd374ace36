"""The ONNX export: the classifier as one graph (``model.onnx``, weights inside) from features
``[batch, max_length, mel_bins]`` to logits ``[batch, classes]``, batch dynamic, checked with
onnxruntime; ``model.json`` beside it (``sidecar.py``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import SoftmoaError
from ..fsutil import atomic_write_json
from ..models.ast import AST
from .check import CHECK_BATCHES, TOLERANCE, check_inputs, largest_difference, require_close
from .sidecar import SIDECAR, describe
from .source import RunModel

MODEL_FILE = "model.onnx"
INPUT, OUTPUT = "features", "logits"


def write_onnx(source: RunModel, model: AST, folder: Path) -> float:
    """Export ``model`` (``source``'s, LoRA merged) to ``folder``, run it under onnxruntime on the
    check's batches and refuse it when its logits leave the run's by more than TOLERANCE; then
    write the sidecar. Returns the largest |logit difference|."""
    onnxruntime = _onnxruntime()
    inputs = check_inputs(source.features)
    batch = torch.export.Dim("batch", min=1)
    try:
        torch.onnx.export(model.eval(), (inputs[-1],), str(folder / MODEL_FILE), input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_shapes=({0: batch},), external_data=False, dynamo=True,
                          verbose=False)
    except Exception as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise SoftmoaError(f"{source.run}: torch.onnx cannot export this {source.method.name} model ({reason}); "
                           "try --format standalone, or SOFTMOA_DEBUG=1 for the traceback") from error
    session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
    run = lambda x: torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])  # noqa: E731
    difference = largest_difference(source.model, run, inputs)
    require_close(difference, "ONNX graph under onnxruntime", str(source.run))
    atomic_write_json(folder / SIDECAR, describe(source, MODEL_FILE, INPUT, OUTPUT, difference, TOLERANCE,
                                                 CHECK_BATCHES))
    return difference


def _onnxruntime():
    """onnxruntime, with the exporter's own needs (onnx, onnxscript) present; else a SoftmoaError."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise SoftmoaError(f"--format onnx needs onnx, onnxscript and onnxruntime ({error.name} is missing): "
                           "pip install 'softmoa[export]'") from None
    return onnxruntime
