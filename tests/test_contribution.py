"""Expert contributions sum to 1 per layer and match a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import tiny_ast_config
from softmoa_cli import build_model
from softmoa_cli.engine.contribution import expert_contributions, plot_contributions
from softmoa_cli.engine.errors import SoftmoaError


def randomized(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "phi" in name or "router" in name:
                param.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("method, options", [("soft", {"experts": 4, "slots": 2}), ("dense", {"experts": 3})])
def test_shares_sum_to_one_and_match_direct_routing(method, options, tmp_path):
    torch.manual_seed(0)
    model = randomized(build_model(tiny_ast_config(), method, 4, reduction_rate=16, **options))
    batches = [torch.randn(2, 100, 128), torch.randn(3, 100, 128)]
    result = expert_contributions(model, batches)
    layers, experts = result.shares.shape
    assert (layers, experts) == (2, options["experts"])
    assert np.allclose(result.shares.sum(axis=1), 1.0)
    assert result.shares.std() > 0  # randomised routers are not uniform
    # Direct: layer 0's mixture on its real input (LayerNorm 1 of block 0 after the embeddings).
    inputs = []
    hook = model.blocks[0].norm1.register_forward_hook(lambda m, a, out: inputs.append(out))
    with torch.no_grad():
        for batch in batches:
            model(batch)
    hook.remove()
    mixture = model.blocks[0].attn.adapter
    mass = sum((mixture.route(x)[1].sum(dim=(0, 1, 3)) if method == "soft" else mixture.router_weights(x).sum(dim=(0, 1)))
               for x in inputs)
    assert np.allclose(result.shares[0], (mass / mass.sum()).detach().numpy(), atol=1e-6)
    assert np.all((result.normalized_entropy > 0) & (result.normalized_entropy <= 1))
    png = plot_contributions(result, tmp_path / "experts.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_uniform_router_is_perfectly_balanced():
    model = build_model(tiny_ast_config(), "dense", 4, experts=4, reduction_rate=16)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.adapter.router.weight.zero_()
            block.attn.adapter.router.bias.zero_()
    result = expert_contributions(model, [torch.randn(2, 100, 128)])
    assert np.allclose(result.shares, 0.25) and np.allclose(result.normalized_entropy, 1.0)
    assert np.allclose(result.min_max_ratio, 1.0)


def test_models_without_mixtures_are_refused():
    with pytest.raises(SoftmoaError, match="no Soft-MoA or Dense-MoA"):
        expert_contributions(build_model(tiny_ast_config(), "adapter", 4), [torch.randn(1, 100, 128)])


def test_analyze_a_trained_run(tmp_path):
    from helpers import toy_config, toy_table

    from softmoa_cli.engine.contribution import analyze_run
    from softmoa_cli.engine.train import finetune

    table = toy_table()
    run, _ = finetune(toy_config("soft", epochs=1), tmp_path / "run", table=table)
    result = analyze_run(run, "test", table=table)
    assert result.kind == "soft" and result.shares.shape == (2, 3)
    assert np.allclose(result.shares.sum(axis=1), 1.0)
    with pytest.raises(SoftmoaError, match="choose test, valid or train"):
        analyze_run(run, "everything", table=table)
