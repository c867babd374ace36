"""Activation checkpointing (``set_activation_checkpointing`` in engine/models/backbone.py): for every
method the checkpointed model's loss and gradients equal the plain model's, the blocks'
activations are no longer kept by the forward, and eval and no_grad outputs are unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_ast_config
from torch import nn

from softmoa_cli.engine.models.backbone import set_activation_checkpointing
from softmoa_cli.engine.petl.build import build_model

METHODS = [
    ("adapter", {}),
    ("adapter", {"kind": "convpass"}),  # dropout inside the block: the recompute must draw the same mask
    ("soft", {"experts": 3, "slots": 2, "adapter_config": "houlsby"}),
    ("dense", {"experts": 3}),
    ("lora", {"rank": 4}),
    ("full", {}),
    ("linear", {}),
]
IDS = ["adapter", "convpass", "soft-houlsby", "dense", "lora", "full", "linear"]
DEPTH = 3  # blocks 0 and 1 are checkpointed, the last one never is


def perturbed_model(method: str, options: dict) -> nn.Module:
    """A tiny AST with ``method``, every weight moved off its init (zero up-projections and LoRA
    B matrices would leave the gradients before them at zero, comparing nothing)."""
    torch.manual_seed(0)
    model = build_model(tiny_ast_config(depth=DEPTH), method, 5, **options)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param), alpha=0.05)
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[3, 100, 128]`` and labels ``[3]``."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 100, 128, generator=generator), torch.randint(5, (3,), generator=generator)


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, torch.Tensor], int]:
    """Loss, gradients by parameter name, and the bytes of the tensors the forward kept for the
    backward outside any checkpoint (distinct storages)."""
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    model.train()
    torch.manual_seed(2)  # the same dropout masks in both models
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    grads = {name: param.grad for name, param in model.named_parameters() if param.requires_grad}
    return loss.item(), grads, sum(kept.values())


@pytest.mark.parametrize("method, options", METHODS, ids=IDS)
def test_checkpointed_loss_and_gradients_equal_the_plain_model(method, options):
    plain = perturbed_model(method, options)
    checkpointed = copy.deepcopy(plain)
    set_activation_checkpointing(checkpointed, True)
    x, y = batch()

    plain_loss, plain_grads, plain_kept = train_step(plain, x, y)
    loss, grads, kept = train_step(checkpointed, x, y)

    assert loss == pytest.approx(plain_loss, abs=1e-6)
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        if not name.endswith("attn.k.bias"):  # softmax ignores a key bias: its gradient is 0 up to rounding
            assert plain_grads[name].abs().max() > 1e-5, f"{name}: a zero gradient compares nothing"
        torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=1e-6, msg=name)
    if method == "linear":  # nothing in the blocks trains: the forward kept nothing there to drop
        assert kept == plain_kept
    else:  # two of three blocks keep only their input
        assert kept < 0.6 * plain_kept


@pytest.mark.parametrize("method, options", METHODS[:3], ids=IDS[:3])
def test_eval_and_no_grad_outputs_are_unchanged(method, options):
    plain = perturbed_model(method, options)
    checkpointed = copy.deepcopy(plain)
    set_activation_checkpointing(checkpointed, True)
    x, _ = batch()
    with torch.no_grad():
        assert torch.equal(checkpointed.eval()(x), plain.eval()(x))
        torch.manual_seed(3)
        trained_plain = plain.train()(x)
        torch.manual_seed(3)
        assert torch.equal(checkpointed.train()(x), trained_plain)


class Scaled(nn.Module):
    """A module wrapped around a whole block, as a method plugin might: ``scale * block(x)``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.block(x)


def test_the_recompute_covers_modules_wrapped_around_blocks():
    plain = perturbed_model("soft", {"experts": 3})
    for i, block in enumerate(plain.blocks):
        plain.blocks[i] = Scaled(block)
    checkpointed = copy.deepcopy(plain)
    set_activation_checkpointing(nn.Sequential(checkpointed), True)  # the AST found inside another module
    x, y = batch()

    plain_loss, plain_grads, plain_kept = train_step(plain, x, y)
    loss, grads, kept = train_step(checkpointed, x, y)

    assert loss == pytest.approx(plain_loss, abs=1e-6)
    for name in ("blocks.0.scale", "blocks.1.scale", "blocks.0.block.attn.adapter.experts.down"):
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=0, atol=1e-6, msg=name)
    assert kept < 0.6 * plain_kept


def test_switching_off_restores_the_plain_forward():
    model = perturbed_model("adapter", {})
    x, y = batch()
    _, _, plain_kept = train_step(model, x, y)
    set_activation_checkpointing(model, True)
    set_activation_checkpointing(model, False)
    assert train_step(model, x, y)[2] == plain_kept
