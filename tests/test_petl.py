"""PETL modules against reference math, and every method through the same generic checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_ast_config
from softmoa_cli import BottleneckAdapter, DenseMoA, SoftMoA, build_model
from softmoa_cli.engine.accounting import cost
from softmoa_cli.engine.models.ast import AST
from softmoa_cli.engine.petl.layers import ExpertBank
from softmoa_cli.engine.petl.lora import LoRADelta
from softmoa_cli.engine.petl.methods import petl_modules


def randomize(module: torch.nn.Module, std: float = 0.3) -> None:
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0, std)


def expert(bank: ExpertBank, i: int, x: torch.Tensor) -> torch.Tensor:
    """Expert i written out plainly: Linear -> GELU -> Linear."""
    return F.gelu(x @ bank.down[i] + bank.down_bias[i]) @ bank.up[i] + bank.up_bias[i]


@pytest.mark.parametrize("normalize", [False, True])
def test_soft_moa_equals_per_expert_loop(normalize):
    torch.manual_seed(0)
    b, m, d, n, p = 2, 11, 16, 3, 2
    moa = SoftMoA(d, n, p, bottleneck=4, normalize=normalize)
    randomize(moa)
    x = torch.randn(b, m, d)
    phi = moa.phi
    xr = x
    if normalize:
        xr, phi = F.normalize(x, dim=-1), moa.scale * F.normalize(moa.phi, dim=0)
    y = torch.zeros(b, m, d)
    for bi in range(b):
        logits = torch.stack([torch.stack([xr[bi] @ phi[:, i, j] for j in range(p)], -1) for i in range(n)], 1)  # [m, n, p]
        dispatch = torch.softmax(logits, dim=0)
        combine = torch.softmax(logits.reshape(m, n * p), dim=1).reshape(m, n, p)
        for i in range(n):
            for j in range(p):
                slot = (dispatch[:, i, j, None] * x[bi]).sum(0)
                out = expert(moa.experts, i, slot)
                y[bi] += combine[:, i, j, None] * out
    assert torch.allclose(moa(x), y, atol=1e-5)
    dispatch, combine = moa.route(x)
    assert torch.allclose(dispatch.sum(dim=1), torch.ones(b, n, p))
    assert torch.allclose(combine.sum(dim=(2, 3)), torch.ones(b, m))


def test_dense_moa_equals_per_expert_loop():
    torch.manual_seed(0)
    d, n = 16, 4
    moa = DenseMoA(d, n, bottleneck=5)
    randomize(moa)
    x = torch.randn(2, 7, d)
    w = torch.softmax(x @ moa.router.weight.t() + moa.router.bias, dim=-1)
    y = sum(w[..., i, None] * expert(moa.experts, i, x) for i in range(n))
    assert torch.allclose(moa(x), y, atol=1e-5)
    assert torch.allclose(moa.router_weights(x).sum(-1), torch.ones(2, 7))


def test_bottleneck_adapter_is_linear_gelu_linear():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(16, 4)
    randomize(adapter)
    x = torch.randn(2, 5, 16)
    expected = F.gelu(x @ adapter.down.weight.t() + adapter.down.bias) @ adapter.up.weight.t() + adapter.up.bias
    assert torch.allclose(adapter(x), expected, atol=1e-6)


# ------------------------------------------------------------------ the method table

D, DEPTH, M_TOKENS, CLASSES = 64, 2, 12 * 9 + 2, 5
HEAD = D * CLASSES + CLASSES
LN = 2 * D
NARROW = 8  # hidden units of an adapter whose rate is unset, on a backbone narrower than AST-base


def bottleneck_params(r):
    return 2 * D * r + r + D


METHODS = [  # (name, options, trainable parameters by formula, starts at the backbone)
    ("linear", {}, HEAD, True),
    ("full", {}, None, True),
    ("adapter", {}, DEPTH * (bottleneck_params(NARROW) + LN) + LN + HEAD, True),
    ("adapter", {"reduction_rate": 16, "adapter_config": "houlsby"},
     DEPTH * 2 * (bottleneck_params(4) + LN) + LN + HEAD, True),
    ("adapter", {"reduction_rate": 16, "location": "ffn", "placement": "sequential"},
     DEPTH * (bottleneck_params(4) + LN) + LN + HEAD, True),
    ("adapter", {"kind": "convpass", "reduction_rate": 8},
     DEPTH * (bottleneck_params(8) + 3 * 8 * 8 + 8 + LN) + LN + HEAD, True),
    ("dense", {"experts": 3, "reduction_rate": 16},
     DEPTH * (3 * bottleneck_params(4) + D * 3 + 3 + LN) + LN + HEAD, True),
    ("soft", {"experts": 4, "slots": 2, "reduction_rate": 16},
     DEPTH * (4 * bottleneck_params(4) + D * 4 * 2 + LN) + LN + HEAD, True),
    ("soft", {"experts": 4, "slots": 1, "reduction_rate": 16, "normalize": True, "location": "ffn"},
     DEPTH * (4 * bottleneck_params(4) + D * 4 + 1 + LN) + LN + HEAD, True),
    ("lora", {"rank": 4}, DEPTH * 2 * (4 * D * 2) + LN + HEAD, True),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in options.items())}" for name, options, *_ in METHODS]


def backbone_and_model(name, options):
    torch.manual_seed(0)
    backbone = AST(tiny_ast_config())
    backbone.reset_classifier(CLASSES)
    reference = AST(tiny_ast_config())
    reference.reset_classifier(CLASSES)
    reference.load_state_dict(backbone.state_dict())
    from softmoa_cli.engine.petl.methods import apply_method, method_config

    model = apply_method(backbone, method_config(name, **options))
    return reference.eval(), model


@pytest.mark.parametrize("name, options, trainable, starts_equal", METHODS, ids=IDS)
def test_trainable_parameters_match_formula(name, options, trainable, starts_equal):
    _, model = backbone_and_model(name, options)
    n_trainable, total = cost(model).trainable_params, cost(model).total_params
    assert n_trainable == (total if trainable is None else trainable)
    frozen_backbone = {n for n, p in model.named_parameters() if not p.requires_grad}
    if name not in ("full",):
        assert "patch_embed.weight" in frozen_backbone and "pos_embed" in frozen_backbone
        assert not any(p.requires_grad for n, p in model.named_parameters() if ".attn.base." in n or
                       n.endswith("attn.q.base.weight") or n.endswith("mlp.fc1.weight"))


@pytest.mark.parametrize("name, options, trainable, starts_equal", METHODS, ids=IDS)
def test_default_init_starts_at_the_backbone(name, options, trainable, starts_equal):
    reference, model = backbone_and_model(name, options)
    x = torch.randn(2, 100, 128)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), reference(x), atol=1e-6) == starts_equal


@pytest.mark.parametrize("name, options, trainable, starts_equal",
                         [row for row in METHODS if row[0] not in ("linear", "full")],
                         ids=[i for i, row in zip(IDS, METHODS) if row[0] not in ("linear", "full")])
def test_two_steps_change_every_adapter_matrix(name, options, trainable, starts_equal):
    _, model = backbone_and_model(name, options)
    model.train()
    matrices = {n: p.detach().clone() for n, p in model.named_parameters()
                if p.requires_grad and p.dim() >= 2 and n.startswith("blocks.")}
    assert matrices
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    x, y = torch.randn(4, 100, 128), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    unchanged = [n for n, before in matrices.items() if torch.equal(before, dict(model.named_parameters())[n])]
    assert unchanged == []


def test_zeroing_both_projections_is_caught():
    """The research code's constructors zero both projections: the test above must fail on it."""
    _, model = backbone_and_model("adapter", {"reduction_rate": 16})
    with torch.no_grad():
        for _, module in petl_modules(model):
            module.down.weight.zero_()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    before = model.blocks[0].attn.adapter.down.weight.detach().clone()
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(torch.randn(4, 100, 128)), torch.tensor([0, 1, 2, 3])).backward()
        optimizer.step()
    assert torch.equal(before, model.blocks[0].attn.adapter.down.weight)


def test_research_init_is_small_normal_on_both_projections():
    torch.manual_seed(0)
    moa = SoftMoA(256, 8, 1, 32, init="research")
    for tensor in (moa.experts.down, moa.experts.up):
        assert abs(tensor.std().item() - 0.02) < 0.002
    assert moa.experts.up_bias.abs().max() == 0


def test_lora_update_is_scaled_low_rank():
    torch.manual_seed(0)
    delta = LoRADelta(8, 6, rank=2, alpha=4)
    randomize(delta)
    x = torch.randn(3, 8)
    assert torch.allclose(delta(x), 2.0 * x @ delta.a.t() @ delta.b.t(), atol=1e-6)


def test_a_built_soft_moa_counts_the_flops_of_its_formula():
    model = build_model(tiny_ast_config(), "soft", num_classes=3, experts=4, slots=2, reduction_rate=16)
    c = cost(model)
    assert model(torch.randn(1, 100, 128)).shape == (1, 3)
    n, p, d, r, m = 4, 2, D, 4, M_TOKENS
    per_block = 2 * (3 * m * d * n * p + n * p * 2 * d * r)
    assert c.petl_flops == DEPTH * per_block
    assert model.config.pool == "mean" and not model.config.head_norm


def test_soft_moa_expert_cost_does_not_grow_with_tokens():
    moa = SoftMoA(64, 8, 1, 4)
    routing = lambda m: 2 * 3 * m * 64 * 8  # noqa: E731
    assert moa.flops(1000) - routing(1000) == moa.flops(10) - routing(10)
