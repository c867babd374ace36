"""The AST authors' own .pth checkpoints load and compute what the authors' model computes.

The reference below is written from YuanGongND/ast ``src/models/ast_models.py`` (a timm DeiT
with fused qkv, (cls + dist) / 2 and ``mlp_head``), not from this loader's key map.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from softmoa_cli.engine.errors import CheckpointError
from softmoa_cli.engine.models.pretrained import load_pretrained, save_model

DIM, DEPTH, HEADS, MLP, CLASSES, FRAMES = 64, 2, 4, 128, 7, 100
GRID = ((128 - 16) // 10 + 1, (FRAMES - 16) // 10 + 1)  # (12, 9) patches at fstride = tstride = 10


def authors_state() -> dict[str, torch.Tensor]:
    """Random weights under every key of the authors' AudioSet .pth (less ``module.``), tiny sizes."""
    d, (f, t) = DIM, GRID
    shapes = {"v.cls_token": (1, 1, d), "v.dist_token": (1, 1, d), "v.pos_embed": (1, 2 + f * t, d),
              "v.patch_embed.proj.weight": (d, 1, 16, 16), "v.patch_embed.proj.bias": (d,),
              "v.norm.weight": (d,), "v.norm.bias": (d,), "v.head.weight": (1000, d), "v.head.bias": (1000,),
              "v.head_dist.weight": (1000, d), "v.head_dist.bias": (1000,), "mlp_head.0.weight": (d,),
              "mlp_head.0.bias": (d,), "mlp_head.1.weight": (CLASSES, d), "mlp_head.1.bias": (CLASSES,)}
    for i in range(DEPTH):
        p = f"v.blocks.{i}."
        shapes |= {p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "attn.qkv.weight": (3 * d, d),
                   p + "attn.qkv.bias": (3 * d,), p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                   p + "norm2.weight": (d,), p + "norm2.bias": (d,), p + "mlp.fc1.weight": (MLP, d),
                   p + "mlp.fc1.bias": (MLP,), p + "mlp.fc2.weight": (d, MLP), p + "mlp.fc2.bias": (d,)}
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) * 0.2 for name, shape in shapes.items()}
    for name in state:
        if name.endswith(("norm1.weight", "norm2.weight", "mlp_head.0.weight")):
            state[name] += 1
        # What writes the residual stream (embeddings, attn.proj, mlp.fc2) and the final norm are
        # tiny, so every LayerNorm sees inputs of small variance, where eps 1e-6 versus 1e-5
        # moves the logits far beyond the tolerance.
        if name.startswith(("v.cls_token", "v.dist_token", "v.pos_embed", "v.norm")) or \
                name.split(".")[-2] in ("proj", "fc2"):
            state[name] *= 0.02
    return state


def authors_forward(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ASTModel.forward of the authors in plain torch ops: ``[b, frames, 128]`` -> ``[b, classes]``."""
    def linear(h, name):
        return F.linear(h, s[f"{name}.weight"], s[f"{name}.bias"])

    def norm(h, name, eps):
        return F.layer_norm(h, (DIM,), s[f"{name}.weight"], s[f"{name}.bias"], eps)

    x = x.unsqueeze(1).transpose(2, 3)  # [b, 1, 128, frames]
    x = F.conv2d(x, s["v.patch_embed.proj.weight"], s["v.patch_embed.proj.bias"], stride=(10, 10))
    x = x.flatten(2).transpose(1, 2)  # [b, f * t, d]
    b = x.shape[0]
    x = torch.cat([s["v.cls_token"].expand(b, -1, -1), s["v.dist_token"].expand(b, -1, -1), x], dim=1)
    x = x + s["v.pos_embed"]  # [b, m, d]
    m, head_dim = x.shape[1], DIM // HEADS
    for i in range(DEPTH):  # timm Block: pre-LN, LayerNorm eps 1e-6
        p = f"v.blocks.{i}."
        qkv = linear(norm(x, p + "norm1", 1e-6), p + "attn.qkv").reshape(b, m, 3, HEADS, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [b, heads, m, d / heads]
        attn = (q @ k.transpose(-2, -1) * head_dim ** -0.5).softmax(dim=-1)
        x = x + linear((attn @ v).transpose(1, 2).reshape(b, m, DIM), p + "attn.proj")
        x = x + linear(F.gelu(linear(norm(x, p + "norm2", 1e-6), p + "mlp.fc1")), p + "mlp.fc2")
    x = norm(x, "v.norm", 1e-6)
    x = (x[:, 0] + x[:, 1]) / 2
    return linear(norm(x, "mlp_head.0", 1e-5), "mlp_head.1")  # nn.LayerNorm's default eps


def save_pth(state: dict[str, torch.Tensor], path):
    """Saved as the authors' DataParallel model was: every key under ``module.``."""
    torch.save({f"module.{name}": tensor for name, tensor in state.items()}, path)
    return path


def test_authors_pth_gives_the_authors_logits(tmp_path):
    state = authors_state()
    path = save_pth(state, tmp_path / "audioset.pth")
    pretrained = load_pretrained(path, heads=HEADS, max_length=FRAMES)  # heads: not in the weights
    x = torch.randn(3, FRAMES, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = pretrained.model.eval()(x).double()
    expected = authors_forward({k: v.double() for k, v in state.items()}, x.double())
    assert pretrained.model.config.grid == GRID and got.shape == (3, CLASSES)
    assert expected.abs().max() > 0.5  # not a comparison of near-zero outputs
    assert (got - expected).abs().max().item() <= 1e-5


def test_authors_pth_uses_the_authors_layer_norm_eps(tmp_path):
    model = load_pretrained(save_pth(authors_state(), tmp_path / "audioset.pth"), heads=HEADS).model
    block_norms = [norm for block in model.blocks for norm in (block.norm1, block.norm2)] + [model.norm]
    assert all(norm.eps == 1e-6 for norm in block_norms)
    assert model.head.norm.eps == 1e-5


def test_unknown_tensor_beside_the_deit_heads_is_refused(tmp_path):
    state = authors_state() | {"v.something.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError) as error:
        load_pretrained(save_pth(state, tmp_path / "odd.pth"), heads=HEADS)
    assert "1 unexpected tensor(s): v.something.weight" in str(error.value)


def test_head_eps_survives_saving_and_older_saved_models_still_load(tmp_path):
    pretrained = load_pretrained(save_pth(authors_state(), tmp_path / "audioset.pth"), heads=HEADS)
    assert load_pretrained(save_model(pretrained, tmp_path / "own")).model.head.norm.eps == 1e-5
    # softmoa.json written before head_eps existed (and before other families: the config under
    # "ast", without their fields): the head used the block eps.
    meta = json.loads((tmp_path / "own" / "softmoa.json").read_text())
    del meta["family"]
    meta["ast"] = {k: v for k, v in meta.pop("config").items() if k not in ("head_eps", "head_proj", "weighted_layer_sum")}
    (tmp_path / "own" / "softmoa.json").write_text(json.dumps(meta))
    assert load_pretrained(tmp_path / "own").model.head.norm.eps == 1e-6
