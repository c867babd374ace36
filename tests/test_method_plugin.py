"""A PETL method from an outside package registers once and works in presets and the engine."""

from __future__ import annotations

import importlib
from typing import Literal

import torch

from conftest import tiny_ast_config
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.methods import METHODS, Method, MethodConfig


class BiasOnlyConfig(MethodConfig):
    """A BitFit-like method: train the biases of the attention output projections."""

    name: Literal["bias-only"] = "bias-only"


def train_attention_biases(model, config):
    for block in model.blocks:
        block.attn.proj.bias.requires_grad_(True)


def test_plugin_method_in_presets_and_models():
    METHODS.register("bias-only", Method(BiasOnlyConfig, train_attention_biases), builtin=False)
    try:
        from softmoa_cli.engine import config as schema

        importlib.reload(schema)
        config = schema.RunConfig.model_validate({"data": {"dataset": "toy"}, "method": {"name": "bias-only"}})
        assert isinstance(config.method, BiasOnlyConfig)
        model = build_model(tiny_ast_config(), config.method, num_classes=3)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {"blocks.0.attn.proj.bias", "blocks.1.attn.proj.bias", "head.fc.weight", "head.fc.bias"}
        assert model(torch.randn(1, 100, 128)).shape == (1, 3)
    finally:
        METHODS._items.pop("bias-only", None)
        importlib.reload(schema)
