"""Every PETL method on every backbone family, through the same generic checks: it builds, starts
exactly at the backbone's output, trains every adapter matrix and nothing frozen; activation
checkpointing, ``forward_intermediates``, the own format and the analytic FLOPs agree on each
family."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from helpers import random_hf_model, tiny_ast_config
from softmoa_cli.engine.task import SINGLE
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.models.backbone import set_activation_checkpointing
from softmoa_cli.engine.models.families import build_backbone
from softmoa_cli.engine.models.pretrained import Pretrained, load_pretrained, save_model
from softmoa_cli.engine.models.wav2vec2 import HubertConfig, Wav2Vec2Config, WavLMConfig
from softmoa_cli.engine.models.whisper import WhisperConfig
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.methods import petl_modules

SHAPE = dict(dim=64, depth=2, heads=4, mlp_dim=128, max_length=100, num_classes=5)
CONV = dict(conv_layers=((8, 10, 5),) + ((8, 3, 2),) * 4 + ((8, 2, 2),) * 2, pos_kernel=16, pos_groups=4)
FAMILIES = {
    "ast": tiny_ast_config(),
    "whisper": WhisperConfig(**SHAPE, num_mel_bins=16, positions=50),
    "wav2vec2": Wav2Vec2Config(**SHAPE, **CONV),
    "wav2vec2-large": Wav2Vec2Config(**SHAPE, **CONV, conv_norm="layer", conv_bias=True, pre_norm=True),
    "hubert": HubertConfig(**SHAPE, **CONV, feature_norm=False),
    "wavlm": WavLMConfig(**SHAPE, **CONV, num_buckets=32, max_distance=64),
}
METHODS = [
    ("linear", {}),
    ("full", {}),
    ("adapter", {"reduction_rate": 16}),  # bottleneck, parallel, Pfeiffer at the MHSA
    ("adapter", {"reduction_rate": 16, "placement": "sequential", "location": "ffn"}),
    ("adapter", {"kind": "convpass", "reduction_rate": 8, "adapter_config": "houlsby"}),
    ("dense", {"experts": 3, "reduction_rate": 16, "location": "ffn"}),
    ("soft", {"experts": 4, "slots": 2, "reduction_rate": 16}),
    ("soft", {"experts": 3, "reduction_rate": 16, "adapter_config": "houlsby", "normalize": True}),
    ("lora", {"rank": 4, "targets": ("q", "k", "v", "proj")}),
]
METHOD_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in options.items())}".rstrip("-") for name, options in METHODS]
TABLE = [(family, name, options) for family in FAMILIES for name, options in METHODS]
TABLE_IDS = [f"{family}-{method}" for family in FAMILIES for method in METHOD_IDS]


def inputs(config, batch: int = 3) -> torch.Tensor:
    """A batch of input windows of ``config``'s family (``input_shape``), seeded."""
    shape = build_backbone(config).input_shape(config.max_length)
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1))


def built(family: str, name: str, options: dict, seed: int = 0):
    """``build_model`` of a random ``family`` backbone with method ``name`` and 3 classes."""
    torch.manual_seed(seed)
    return build_model(FAMILIES[family], name, 3, **options)


@pytest.mark.parametrize("family, name, options", TABLE, ids=TABLE_IDS)
def test_every_method_starts_at_the_backbone(family, name, options):
    reference = built(family, "linear", {}).eval()
    model = built(family, name, options).eval()
    assert model.family == family.removesuffix("-large")
    x = inputs(FAMILIES[family])
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("family, name, options", [row for row in TABLE if row[1] not in ("linear", "full")],
                         ids=[i for i, row in zip(TABLE_IDS, TABLE) if row[1] not in ("linear", "full")])
def test_two_steps_move_every_adapter_matrix_and_nothing_frozen(family, name, options):
    model = built(family, name, options).train()
    assert petl_modules(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    matrices = [n for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and n.startswith("blocks.")]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    x, y = inputs(FAMILIES[family], 4), torch.tensor([0, 1, 2, 0])
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    after = dict(model.named_parameters())
    assert matrices and [n for n in matrices if torch.equal(before[n], after[n])] == []
    frozen = [n for n, p in after.items() if not p.requires_grad]
    assert frozen and [n for n in frozen if not torch.equal(before[n], after[n])] == []


def perturbed(family: str, name: str, options: dict):
    """A 3-block model with every weight moved off its init (zero up-projections would leave the
    gradients before them at zero, comparing nothing)."""
    torch.manual_seed(0)
    model = build_model(FAMILIES[family].replace(depth=3), name, 3, **options)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param), alpha=0.05)
    return model


def loss_and_gradients(model, x, y):
    model.train()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("name, options", [("soft", {"experts": 3, "adapter_config": "houlsby"}), ("full", {})],
                         ids=["soft-houlsby", "full"])
@pytest.mark.parametrize("family", FAMILIES)
def test_activation_checkpointing_gives_equal_loss_and_gradients(family, name, options):
    plain = perturbed(family, name, options)
    checkpointed = copy.deepcopy(plain)
    set_activation_checkpointing(checkpointed, True)
    x, y = inputs(FAMILIES[family]), torch.tensor([0, 1, 2])
    plain_loss, plain_grads = loss_and_gradients(plain, x, y)
    loss, grads = loss_and_gradients(checkpointed, x, y)
    assert loss == pytest.approx(plain_loss, abs=1e-6)
    assert grads.keys() == plain_grads.keys()
    for n, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[n], rtol=0, atol=1e-6, msg=n)
    assert plain_grads["blocks.0.norm1.weight"].abs().max() > 1e-5  # the first block's gradients compare something


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_intermediates_equal_the_blocks_outputs(family):
    model = perturbed(family, "soft", {"experts": 3}).eval()
    captured = {}
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda module, args, output, i=i: captured.setdefault(i, output))
    x = inputs(FAMILIES[family])
    with torch.no_grad():
        features = model.forward_features(x)
        final, blocks = model.forward_intermediates(x, [0, -1])
        early = model.forward_intermediates(x, 1, stop_early=True, intermediates_only=True)
    assert torch.equal(final, features)
    assert torch.equal(blocks[0], captured[0]) and torch.equal(blocks[1], captured[2])
    assert len(early) == 1 and torch.equal(early[0], captured[2])
    with torch.no_grad():
        captured.clear()
        first = model.forward_intermediates(x, [0], stop_early=True, intermediates_only=True)
    assert list(captured) == [0] and torch.equal(first[0], blocks[0])  # stopped after block 0


@pytest.mark.parametrize("family", FAMILIES)
def test_own_format_round_trips_each_family(family, tmp_path):
    torch.manual_seed(0)
    config = FAMILIES[family].replace(weighted_layer_sum=True, head_proj=24)
    model = build_backbone(config).eval()
    with torch.no_grad():
        model.layer_weights.normal_(0, 1)
    save_model(Pretrained(model, list("abcde"), SINGLE, "test"), tmp_path / "own")
    loaded = load_pretrained(tmp_path / "own")
    assert loaded.model.family == model.family and loaded.model.config == config and loaded.labels == list("abcde")
    x = inputs(config)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(x), model(x))
    adapted = build_model(loaded, "soft", 3, experts=2)  # a loaded backbone takes a method too
    assert adapted.layer_weights.requires_grad and adapted.head.fc.out_features == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_analytic_flops_equal_the_counted_ones(family):
    model = build_backbone(FAMILIES[family]).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:  # attention as matmuls the counter sees
        model(inputs(FAMILIES[family], batch=1))
    assert model.flops() == counter.get_total_flops()


def test_a_preprocessor_config_gives_the_front_end(tmp_path):
    transformers = pytest.importorskip("transformers")
    _, folder = random_hf_model(tmp_path / "hf")
    transformers.ASTFeatureExtractor(max_length=100).save_pretrained(folder)
    features = FeatureConfig(**load_pretrained(folder).extra["features"])
    assert features == FeatureConfig(max_length=100)
