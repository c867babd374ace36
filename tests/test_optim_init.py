"""Which parameters AdamW decays, and Soft-MoA's slot-parameter (phi) init."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_ast_config

from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.mixtures import SoftMoA
from softmoa_cli.engine.train.optim import make_optimizer

TRAINING = build_config({"data": {"dataset": "toy"}, "method": {"name": "soft"}}).training


def decayed_names(model: torch.nn.Module) -> tuple[set[str], set[str]]:
    """Names of the trainable parameters in the decayed and in the plain group."""
    optimizer = make_optimizer(model, TRAINING, 0.01)
    names = {id(p): name for name, p in model.named_parameters()}
    groups = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in optimizer.param_groups}
    return groups.get(TRAINING.weight_decay, set()), groups.get(0.0, set())


def leaves(names: set[str]) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name in names}


@pytest.mark.parametrize("method,options", [("soft", {"experts": 3, "slots": 2, "normalize": True}),
                                            ("dense", {"experts": 3}),
                                            ("adapter", {"reduction_rate": 8})])
def test_weight_matrices_decay_and_biases_of_any_rank_do_not(method, options):
    model = build_model(tiny_ast_config(), method, 5, **options)
    decayed, plain = decayed_names(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert decayed | plain == trainable and not decayed & plain
    assert all(name.endswith("bias") or "norm" in name or name.endswith("scale") for name in plain), plain
    assert "head.fc.weight" in decayed and "head.fc.bias" in plain and "norm.weight" in plain
    if method == "adapter":
        assert leaves(decayed) == {"weight"}
    else:  # the expert bank's stacked biases, [n, r] and [n, d], are biases too
        assert {"down", "up"} <= leaves(decayed) and {"down_bias", "up_bias"} <= leaves(plain)
        assert ("phi" in leaves(decayed)) == (method == "soft")
        assert any(name.endswith("router.weight") for name in decayed) == (method == "dense")


def test_full_fine_tune_decays_tables_and_kernels_not_tokens():
    model = build_model(tiny_ast_config(), "full", 5)
    decayed, plain = decayed_names(model)
    assert {"pos_embed", "patch_embed.weight", "blocks.0.attn.q.weight"} <= decayed
    assert {"cls_token", "dist_token", "patch_embed.bias", "blocks.0.norm1.weight"} <= plain


def test_a_one_row_weight_still_decays():
    """Bottleneck width 1 (d / reduction_rate < 1.5) makes ``down.weight`` ``[1, d]``: still a matrix."""
    model = build_model(tiny_ast_config(), "adapter", 5, reduction_rate=128)
    decayed, _ = decayed_names(model)
    assert "blocks.0.attn.adapter.down.weight" in decayed


@pytest.mark.parametrize("slots", [1, 4])
def test_phi_is_xavier_normal_on_the_three_axis_tensor_as_the_research_code(slots):
    """torch's fans for ``[d, n, p]``: fan_in = n p, fan_out = d p; for p = 1 the old [d, n p]
    view agrees, for p > 1 it does not (fan_out d)."""
    d, n = 256, 32
    torch.manual_seed(0)
    phi = SoftMoA(d, n, slots, bottleneck=1).phi.detach()
    expected = math.sqrt(2 / (n * slots + d * slots))
    view_std = math.sqrt(2 / (n * slots + d))
    # 8192 or more draws: the sample std is within about 1% of the true one.
    assert phi.std().item() == pytest.approx(expected, rel=0.03)
    assert phi.mean().item() == pytest.approx(0, abs=3 * expected / math.sqrt(phi.numel()))
    if slots > 1:
        assert abs(phi.std().item() - view_std) > 0.3 * view_std
