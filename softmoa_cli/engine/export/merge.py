"""Folding LoRA into the backbone: each LoRALinear becomes one Linear with ``W + (alpha / rank) B A``,
the same function up to float rounding and no extra module at inference."""

from __future__ import annotations

from torch import nn

from ..petl.lora import LoRALinear


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear in ``model`` by its merged Linear, in place; return how many."""
    found = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, LoRALinear)]
    for parent, name, child in found:
        setattr(parent, name, child.merged())
    return len(found)
