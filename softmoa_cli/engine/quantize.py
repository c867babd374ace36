"""Int8 dynamic quantization of a model's frozen Linears, for scoring on the CPU.

Which Linears, found by walking the modules (never by parameter names): every ``nn.Linear``
(that exact type) except those inside a PETL module (adapters, mixtures, LoRA pairs) or a
classifier head, which a task trained and which stay float. The frozen ``base`` of a
``LoRALinear`` is quantized, its pair is not. A ``SharedBackbone`` is walked the same way: the
frozen modules of its routed sites are quantized, the tasks' parts, norm copies and heads stay
float.

How (``torch.ao.nn.quantized.dynamic.Linear``): the weight is stored in int8 per output channel
(symmetric: zero point 0, scale = the row's largest ``|w|`` / 127.5), the bias in float32. Each
call quantizes its input to uint8 with one scale and zero point from the range of that whole
input tensor, multiplies in int8 with int32 sums (fbgemm on x86, qnnpack on ARM) and returns
float32. So a row's scores depend slightly on the rows batched with it: batched and one at a
time agree to the int8 noise, not to float rounding.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear
from torch.ao.quantization.observer import default_per_channel_weight_observer

from .errors import SoftmoaError
from .models.layers import ClassifierHead
from .petl.layers import PETLModule

KEEP_FLOAT = (PETLModule, ClassifierHead)
"""Modules whose Linears stay float: what a task trains."""


def frozen_linears(model: nn.Module, prefix: str = "") -> list[tuple[nn.Module, str, str]]:
    """The Linears ``quantize_frozen`` quantizes: ``(parent, child name, qualified name)`` each,
    in module order."""
    found = []
    for name, child in model.named_children():
        where = f"{prefix}.{name}" if prefix else name
        if type(child) is nn.Linear:
            found.append((model, name, where))
        elif not isinstance(child, KEEP_FLOAT):
            found += frozen_linears(child, where)
    return found


def quantize_frozen(model: nn.Module) -> nn.Module:
    """Replace every frozen Linear of ``model`` (``frozen_linears``) by its int8 dynamic form,
    in place; returns ``model``. A model with a tensor off the CPU is a SoftmoaError."""
    elsewhere = sorted({str(tensor.device) for tensor in (*model.parameters(), *model.buffers())} - {"cpu"})
    if elsewhere:
        raise SoftmoaError(f"int8 quantization is for CPU inference, and this model is on {elsewhere[0]}: score on "
                           "the CPU (`device` cpu), or in float on the GPU")
    for parent, name, _ in frozen_linears(model):
        setattr(parent, name, int8_linear(getattr(parent, name)))
    return model


def int8_linear(linear: nn.Linear) -> Int8Linear:
    """``linear`` as a dynamic int8 Linear: weight ``[out, in]`` in int8 with a scale per output
    channel, bias ``[out]`` float32."""
    weight = linear.weight.detach().float()
    observer = default_per_channel_weight_observer()
    observer(weight)
    scales, zero_points = observer.calculate_qparams()
    with warnings.catch_warnings():  # torch 2.14 warns: quantized tensors are deprecated (README, "int8")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    quantized = Int8Linear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
    quantized.set_weight_bias(qweight, None if linear.bias is None else linear.bias.detach().float())
    return quantized


def is_int8(module: nn.Module) -> bool:
    """Whether ``module`` is a dynamic Linear with int8 weights (not float16 ones)."""
    return isinstance(module, Int8Linear) and module.weight().is_quantized


def same_int8(quantized: Int8Linear, other: nn.Module) -> bool:
    """Whether ``other`` (an int8 Linear, or a float one quantized as ``int8_linear`` does) holds
    exactly the int8 weights, scales, zero points and float bias of ``quantized``."""
    if type(other) is nn.Linear:
        other = int8_linear(other)
    if not is_int8(other):
        return False
    mine, theirs = _int8_tensors(quantized), _int8_tensors(other)
    return all((a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
               for a, b in zip(mine, theirs))


def _int8_tensors(quantized: Int8Linear) -> tuple[torch.Tensor | None, ...]:
    """int8 weight ``[out, in]``, scales and zero points (``[out]`` per channel, ``[]`` per
    tensor), float bias ``[out]`` or None."""
    weight = quantized.weight()
    if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        qparams = (torch.tensor(weight.q_scale()), torch.tensor(weight.q_zero_point()))
    else:
        qparams = (weight.q_per_channel_scales(), weight.q_per_channel_zero_points())
    return (weight.int_repr(), *qparams, quantized.bias())
