"""The ONNX export: the classifier as one graph (``model.onnx``, weights inside) from a batch of
windows ``[batch, *window]`` (log-mels ``[max_length, mel_bins]``, or ``[max_length * 160]``
samples of a waveform) to logits ``[batch, classes]``, batch dynamic, checked with onnxruntime;
``model.json`` beside it (``sidecar.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import SoftmoaError
from ..fsutil import atomic_write_json
from ..models.backbone import Backbone
from .check import CHECK_BATCHES, TOLERANCE, check_inputs, largest_difference, require_close
from .sidecar import SIDECAR, describe
from .source import RunModel

MODEL_FILE = "model.onnx"
INPUT, OUTPUT = "features", "logits"


def write_onnx(source: RunModel, model: Backbone, folder: Path) -> float:
    """Export ``model`` (``source``'s, LoRA merged) to ``folder``, run it under onnxruntime on the
    check's batches and refuse it when its logits leave the run's by more than TOLERANCE; then
    write the sidecar. Returns the largest |logit difference|."""
    _onnxruntime()  # the exporter's and the check's packages, before the work
    inputs = check_inputs(source.features)
    try:
        export_graph(model, folder / MODEL_FILE)
    except Exception as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise SoftmoaError(f"{source.run}: torch.onnx cannot export this {source.method.name} model ({reason}); "
                           "try `export_format` standalone, or SOFTMOA_DEBUG=1 for the traceback") from error
    difference = largest_difference(source.model, graph_runner(folder / MODEL_FILE), inputs)
    require_close(difference, "ONNX graph under onnxruntime", str(source.run))
    atomic_write_json(folder / SIDECAR, describe(source, MODEL_FILE, INPUT, OUTPUT, difference, TOLERANCE,
                                                 CHECK_BATCHES))
    return difference


def export_graph(model: Backbone, path: Path) -> None:
    """Write ``model`` as one ONNX file (weights inside): input ``features [batch, *window]``
    (``model.input_shape``) with the batch dynamic, output ``logits [batch, classes]``. Traced on
    a batch of two: torch.export fixes an axis it sees at size 1."""
    example = torch.zeros(2, *model.input_shape(model.config.max_length))
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(model.eval(), (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_shapes=({0: batch},), external_data=False, dynamo=True, verbose=False)


def graph_runner(path: Path, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``features -> logits`` through onnxruntime's CPU provider (``threads``: its intra-op
    threads; None: onnxruntime's choice)."""
    onnxruntime = _onnxruntime()
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])


def _onnxruntime():
    """onnxruntime, with the exporter's own needs (onnx, onnxscript) present; else a SoftmoaError."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise SoftmoaError(f"`export_format` onnx needs onnx, onnxscript and onnxruntime ({error.name} is missing): "
                           "pip install 'softmoa[export]'") from None
    return onnxruntime
