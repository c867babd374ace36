"""The AST backbone and its checkpoints agree with transformers' AST."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import random_hf_model, tiny_ast_config
from softmoa_cli.engine.task import SINGLE
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig, features
from softmoa_cli.engine.errors import CheckpointError
from softmoa_cli.engine.models.ast import AST, resize_pos_embed
from softmoa_cli.engine.models.pretrained import Pretrained, load_pretrained, save_model

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("strides", [(10, 10), (16, 8)])
def test_logits_match_transformers(tmp_path, strides):
    hf, path = random_hf_model(tmp_path / "hf", frequency_stride=strides[0], time_stride=strides[1])
    pretrained = load_pretrained(path)
    x = torch.randn(3, 100, 128)
    with torch.no_grad():
        expected = hf(x).logits
        got = pretrained.model.eval()(x)
    assert pretrained.labels == [f"class{i}" for i in range(5)]
    assert pretrained.model.config.grid == ((128 - 16) // strides[0] + 1, (100 - 16) // strides[1] + 1)
    assert expected.abs().max() > 0.5  # the comparison is not between near-zero outputs
    assert (got - expected).abs().max().item() <= 1e-4


def test_features_match_transformers_extractor(fsdd_clips):
    extractor = transformers.ASTFeatureExtractor()
    for path in fsdd_clips:
        wave = load_mono_16k(path)  # FSDD is 8 kHz: resampled to 16 kHz
        expected = extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_values[0]
        got = features(wave, FeatureConfig(max_length=1024))
        assert got.shape == expected.shape == (1024, 128)
        assert (got - expected).abs().max().item() <= 1e-3


def test_shorter_max_length_keeps_center_cut_pretrained_positions(tmp_path):
    _, path = random_hf_model(tmp_path / "hf")
    full = load_pretrained(path).model
    short = load_pretrained(path, max_length=60).model  # 9 -> 5 time patches
    freq, time = full.config.grid
    old = full.pos_embed[0, 2:].reshape(freq, time, -1)
    new = short.pos_embed[0, 2:].reshape(freq, 5, -1)
    start = time // 2 - 5 // 2
    assert torch.equal(new, old[:, start:start + 5])
    assert torch.equal(short.pos_embed[0, :2], full.pos_embed[0, :2])
    assert short(torch.randn(1, 60, 128)).shape == (1, 5)


def test_longer_max_length_interpolates_along_time():
    pos = torch.arange(2 + 2 * 3, dtype=torch.float32).view(1, -1, 1)  # grid (2, 3), d = 1
    out = resize_pos_embed(pos, (2, 3), (2, 6))
    grid = out[0, 2:, 0].view(2, 6)
    assert torch.allclose(grid[:, 0], torch.tensor([2.0, 5.0]))  # edges keep pretrained values
    assert torch.allclose(grid[:, -1], torch.tensor([4.0, 7.0]))
    assert (grid.diff(dim=1) >= 0).all()  # monotone like the source row


def to_original_state(model: AST) -> dict[str, torch.Tensor]:
    """Our weights written the way the AST authors' .pth files name them."""
    state = {}
    for name, tensor in model.state_dict().items():
        name = (name.replace("patch_embed.", "patch_embed.proj.").replace("head.norm.", "mlp_head.0.")
                .replace("head.fc.", "mlp_head.1."))
        state["module." + (name if name.startswith("mlp_head") else "v." + name)] = tensor.clone()
    for i in range(model.config.depth):
        for kind in ("weight", "bias"):
            parts = [state.pop(f"module.v.blocks.{i}.attn.{p}.{kind}") for p in "qkv"]
            state[f"module.v.blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts)
    return state


def test_original_pth_loads_with_weights_only(tmp_path):
    torch.manual_seed(1)
    model = AST(tiny_ast_config(eps=1e-6, head_eps=1e-5, num_classes=527)).eval()
    torch.save(to_original_state(model), tmp_path / "audioset.pth")
    loaded = load_pretrained(tmp_path / "audioset.pth", heads=4, max_length=100).model.eval()  # heads: not in the weights
    assert loaded.config.max_length == 100 and loaded.config.depth == 2 and loaded.config.grid == (12, 9)
    x = torch.randn(2, 100, 128)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_own_format_round_trip(tmp_path):
    model = AST(tiny_ast_config()).eval()
    save_model(Pretrained(model, list("abcde"), SINGLE, "test"), tmp_path / "own")
    loaded = load_pretrained(tmp_path / "own")
    assert loaded.labels == list("abcde")
    x = torch.randn(1, 100, 128)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model(x))


def test_mismatched_checkpoint_lists_the_problem_tensors(tmp_path):
    model = AST(tiny_ast_config(eps=1e-6))
    state = to_original_state(model)
    del state["module.v.norm.weight"]
    state["module.v.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as error:
        load_pretrained(tmp_path / "bad.pth")
    assert "1 missing tensor(s): v.norm.weight" in str(error.value)
    assert "1 unexpected tensor(s): v.extra" in str(error.value)


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"module.v.cls_token": np.zeros(3)}, tmp_path / "evil.pth")  # needs full unpickling
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_pretrained(tmp_path / "evil.pth")


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_pretrained(tmp_path / "nothing-here")
