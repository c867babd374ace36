"""A PETL method from an outside package registers once and works in presets and the engine;
one that brings its own adapter module reuses the built-in adapter injection (Pfeiffer, Houlsby)."""

from __future__ import annotations

import importlib
from typing import Literal

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from helpers import run, run_ok, tiny_ast_config
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.layers import PETLModule, init_projections_
from softmoa_cli.engine.petl.widths import bottleneck_width
from softmoa_cli.engine.petl.methods import (METHODS, AdapterSites, Method, MethodConfig, SoftConfig, adapter_sites,
                                             petl_modules, register_method)
from softmoa_cli.engine.petl.sites import ParallelSite, SequentialSite


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


# ---------------------------------------------------------------- a plugin reusing adapter injection

class ScaledBottleneck(PETLModule):
    """A bottleneck adapter with a learned output scale: ``s * up(gelu(down(x)))``."""

    def __init__(self, dim: int, bottleneck: int, init, gain: float = 1.0):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.full((), gain))
        init_projections_(self.down.weight, self.up.weight, [self.down.bias, self.up.bias], dim, init)

    def forward(self, x):
        return self.scale * self.up(F.gelu(self.down(x)))

    def flops(self, tokens):
        return 2 * tokens * 2 * self.down.in_features * self.down.out_features


class ScaledConfig(AdapterSites):
    name: Literal["scaled"] = "scaled"
    reduction_rate: float = Field(16, gt=0)
    gain: float = Field(1.0, gt=0, description="starting value of the learned output scale")


def scaled_bottleneck(config: ScaledConfig, dim: int) -> ScaledBottleneck:
    return ScaledBottleneck(dim, bottleneck_width(dim, config.reduction_rate), config.init, config.gain)


def register(registry):
    """What the plugin's ``softmoa.methods`` entry point names."""
    register_method("scaled", ScaledConfig, adapter_sites, module=scaled_bottleneck, builtin=False)


@pytest.fixture
def scaled_method():
    from softmoa_cli.engine import config as schema

    register(METHODS)
    importlib.reload(schema)
    try:
        yield schema
    finally:
        METHODS._items.pop("scaled", None)
        importlib.reload(schema)


SUBLAYERS = {"mhsa": ("attn", "norm1"), "ffn": ("mlp", "norm2")}


@pytest.mark.parametrize("options, locations", [({}, ("mhsa",)), ({"location": "ffn"}, ("ffn",)),
                                                ({"adapter_config": "houlsby"}, ("mhsa", "ffn"))],
                         ids=["pfeiffer-mhsa", "pfeiffer-ffn", "houlsby"])
def test_plugin_module_placed_by_adapter_injection(scaled_method, options, locations):
    config = scaled_method.RunConfig.model_validate({"data": {"dataset": "toy"},
                                                     "method": {"name": "scaled", **options}})
    assert isinstance(config.method, ScaledConfig)
    torch.manual_seed(0)
    model = build_model(tiny_ast_config(), config.method, num_classes=3)
    torch.manual_seed(0)
    reference = build_model(tiny_ast_config(), "linear", num_classes=3)

    # One ScaledBottleneck beside each configured sub-layer, of width round(64 / 16) = 4; nothing elsewhere.
    expected = {f"blocks.{i}.{SUBLAYERS[loc][0]}.adapter" for i in range(2) for loc in locations}
    assert {name for name, _ in petl_modules(model)} == expected
    for block in model.blocks:
        for location, (sublayer, _) in SUBLAYERS.items():
            site = getattr(block, sublayer)
            if location in locations:
                assert isinstance(site, ParallelSite) and isinstance(site.adapter, ScaledBottleneck)
                assert site.adapter.down.out_features == 4
            else:
                assert not isinstance(site, (ParallelSite, SequentialSite))

    # Trainable: the plugin's modules, the LayerNorms that feed them, the final LayerNorm, the head.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    module_params = {f"{site}.{p}" for site in expected for p in ("down.weight", "down.bias", "up.weight", "up.bias",
                                                                  "scale")}
    norms = {f"blocks.{i}.{SUBLAYERS[loc][1]}.{p}" for i in range(2) for loc in locations for p in ("weight", "bias")}
    assert trainable == module_params | norms | {"norm.weight", "norm.bias", "head.fc.weight", "head.fc.bias"}

    # zero_up: starts at the backbone; then two steps change every parameter of the modules.
    x, y = torch.randn(4, 100, 128), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference.eval()(x), atol=1e-6)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in module_params}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(2):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    params = dict(model.named_parameters())
    assert [n for n, p in before.items() if torch.equal(p, params[n])] == []


def test_plugin_name_taken_is_ignored():
    with pytest.warns(UserWarning, match="name is taken"):
        method = register_method("soft", SoftConfig, adapter_sites, module=scaled_bottleneck, builtin=False)
    assert method.module is not scaled_bottleneck and METHODS.get("soft") is method


def test_register_method_rejects_mistakes():
    with pytest.raises(ValueError, match="Literal"):
        register_method("scaled-typo", ScaledConfig, adapter_sites, module=scaled_bottleneck, builtin=False)
    with pytest.raises(ValueError, match="module builder"):
        register_method("scaled", ScaledConfig, adapter_sites, builtin=False)
    with pytest.raises(ValueError, match="AdapterSites"):
        register_method("bias-only", BiasOnlyConfig, adapter_sites, module=scaled_bottleneck, builtin=False)
    assert "scaled" not in METHODS and "bias-only" not in METHODS and "scaled-typo" not in METHODS


TINY_PRESET = """\
data: {dataset: synth, max_length: 100}
model:
  checkpoint: random
  random: {dim: 64, depth: 2, heads: 4, mlp_dim: 128}
training: {epochs: 1, batch_size: 16, seed: 0}
"""


def test_a_plugin_methods_options_are_finetune_flags(scaled_method, tmp_path, monkeypatch):
    """The plugin's own option (``gain``, a field of its config) is a flag of ``finetune``, with
    its description as help; given, it reaches the plugin's modules; a bad value is one line."""
    from softmoa_cli.engine.data import synth_sets
    from softmoa_cli.engine.runs.run import Run

    monkeypatch.setattr(synth_sets, "PER_CLASS", synth_sets.PER_CLASS | {"downstream": 20})
    help_text = " ".join(run_ok("finetune", "--help").output.replace("│", " ").split())
    assert "--gain X Starting value of the learned output scale (scaled; default 1.0)." in help_text
    preset = tmp_path / "tiny.yaml"
    preset.write_text(TINY_PRESET)

    refused = run("finetune", "--preset", preset, "--method", "scaled", "--gain", "0", "--out", tmp_path / "no")
    assert refused.exit_code == 2 and refused.stderr.strip() == "error: --gain 0.0: input should be greater than 0"
    assert not (tmp_path / "no").exists()

    out = tmp_path / "run"
    run_ok("finetune", "--preset", preset, "--method", "scaled", "--gain", "0.25", "--reduction-rate", "8",
           "--out", out)
    run_config = Run.open(out).config
    assert run_config.method == ScaledConfig(gain=0.25, reduction_rate=8)
    scales = [module.scale.item() for _, module in petl_modules(Run.open(out).model())]
    assert len(scales) == 2  # one Pfeiffer adapter per block
    assert all(abs(scale - 0.25) < 0.1 for scale in scales), scales  # started at 0.25, one short epoch since
