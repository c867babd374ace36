"""Int8 dynamic quantization of the frozen Linears (engine/quantize.py): exactly the frozen
Linears become int8 (PETL modules and heads stay float, a LoRA pair's base does not), scores
stay close to float, a model off the CPU is refused, and a quantized shared backbone still
takes new tasks whose frozen weights quantize to its own."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from helpers import tiny_ast_config
from test_backbone_families import FAMILIES, inputs
from test_serve_shared import METHODS, task_model

from softmoa_cli.engine.classifier import Classifier
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.runs.run import Run
from softmoa_cli.engine.models.families import build_backbone
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.methods import petl_modules
from softmoa_cli.engine.quantize import int8_linear, is_int8, quantize_frozen, same_int8
from softmoa_cli.engine.serve.shared import NotShared, SharedBackbone, TaskSite
from softmoa_cli.engine.task import SINGLE

# Measured on these tiny models (64 wide, 2 blocks, trained tensors drawn at random, logits up
# to about 6), 64 random windows: max |int8 - float| logit over the largest |float| logit 1.6%
# with LoRA (its random pairs widen the activations' range), at most 0.25% with every other
# method; features ||int8 - float|| / ||float|| 1.9% with LoRA, at most 0.33% otherwise.
RELATIVE = 0.04
"""Bound on both measures in these tests."""


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone(tiny_ast_config()).eval()


def float_linears(model: nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if type(module) is nn.Linear}


def int8_linears(model: nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if is_int8(module)}


def frozen_by_name(model: nn.Module) -> set[str]:
    """The Linears that should become int8, found by name (an oracle independent of the code's
    walk by type): all but those under a PETL module or the head."""
    kept = [f"{name}." for name, _ in petl_modules(model)] + ["head."]
    return {name for name in float_linears(model) if not name.startswith(tuple(kept))}


def relative_error(quantized: torch.Tensor, reference: torch.Tensor) -> float:
    """max |quantized - reference| over max |reference|."""
    return ((quantized - reference).abs().max() / reference.abs().max()).item()


def relative_norm(quantized: torch.Tensor, reference: torch.Tensor) -> float:
    """||quantized - reference|| / ||reference|| (all elements)."""
    return ((quantized - reference).norm() / reference.norm()).item()


def assert_top1_kept(scores: torch.Tensor, reference: torch.Tensor) -> None:
    """Every row whose float top-1 leads its runner-up by more than twice the largest change
    keeps its top-1 (a near tie may flip)."""
    top2 = reference.topk(2, dim=1).values
    clear = top2[:, 0] - top2[:, 1] > 2 * (scores - reference).abs().max()
    assert clear.float().mean() > 0.5  # the check has rows to check
    assert torch.equal(scores.argmax(1)[clear], reference.argmax(1)[clear])


@pytest.mark.parametrize("name", ["adapter", "houlsby", "soft", "dense", "lora", "linear", "sequential"])
def test_exactly_the_frozen_linears_become_int8(backbone, name):
    method, options = METHODS[name]
    model = task_model(backbone, method, options, classes=4, seed=1)
    trained = [module for _, module in petl_modules(model)] + [model.head]
    before = [copy.deepcopy(module.state_dict()) for module in trained]
    everything, expected = float_linears(model), frozen_by_name(model)
    assert len(expected) == 6 * 2  # q, k, v, proj, fc1, fc2 in each of the 2 blocks
    if name == "lora":
        assert {"blocks.0.attn.q.base", "blocks.1.attn.proj.base"} <= expected

    quantize_frozen(model)
    assert int8_linears(model) == expected
    assert float_linears(model) == everything - expected  # the PETL modules' Linears and the head's
    for module, state in zip(trained, before):
        assert all(torch.equal(module.state_dict()[key], value) for key, value in state.items())


@pytest.mark.parametrize("name", ["adapter", "soft", "lora", "linear"])
def test_int8_scores_stay_close_to_float(backbone, name):
    method, options = METHODS[name]
    model = task_model(backbone, method, options, classes=5, seed=2)
    quantized = quantize_frozen(copy.deepcopy(model))
    x = torch.randn(64, 100, 128, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        reference, scores = model(x), quantized(x)
        features = quantized.forward_features(x)
        torch.testing.assert_close(quantized.forward_head(features), scores, atol=0, rtol=0)
        assert relative_norm(features, model.forward_features(x)) < RELATIVE
    assert relative_error(scores, reference) < RELATIVE
    assert (scores.argmax(1) == reference.argmax(1)).float().mean() >= 0.95
    assert_top1_kept(scores, reference)


@pytest.mark.parametrize("family", ["whisper", "wav2vec2", "wavlm"])
def test_the_speech_backbones_quantize_too(family):
    torch.manual_seed(0)
    model = build_model(FAMILIES[family], "soft", 3, experts=3, reduction_rate=16).eval()
    with torch.no_grad():
        model.head.fc.weight.normal_(0, 1)  # logits large enough to compare
    quantized = quantize_frozen(copy.deepcopy(model))
    assert int8_linears(quantized) == frozen_by_name(model)
    x = inputs(FAMILIES[family], batch=4)
    with torch.inference_mode():
        assert relative_error(quantized(x), model(x)) < RELATIVE


def test_a_model_off_the_cpu_is_refused_and_left_as_it_was(backbone):
    model = build_model(tiny_ast_config(), "soft", 3, experts=2).to("meta")  # another device without a GPU
    with pytest.raises(SoftmoaError, match="int8 quantization is for CPU inference, and this model is on meta"):
        quantize_frozen(model)
    assert not any(is_int8(module) for module in model.modules())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the meta-device test covers the check")
def test_a_model_on_cuda_is_refused():
    with pytest.raises(SoftmoaError, match="CPU inference, and this model is on cuda"):
        quantize_frozen(build_backbone(tiny_ast_config()).cuda())


@pytest.mark.filterwarnings("ignore:torch.ao.quantization is deprecated:DeprecationWarning")
def test_same_int8_compares_int8_weights_scales_and_bias():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    quantized = int8_linear(linear)
    assert same_int8(quantized, linear) and same_int8(quantized, int8_linear(copy.deepcopy(linear)))
    scale = quantized.weight().q_per_channel_scales()[0].item()
    for change in (lambda m: m.weight[0, 0].add_(2 * scale), lambda m: m.bias[3].add_(1e-6)):
        other = copy.deepcopy(linear)
        with torch.no_grad():
            change(other)
        assert not same_int8(quantized, other)
    per_tensor = torch.ao.quantization.quantize_dynamic(nn.Sequential(copy.deepcopy(linear)), {nn.Linear})[0]
    assert not same_int8(quantized, per_tensor)  # other scales: another quantization
    assert not same_int8(quantized, nn.Linear(16, 4))


def test_a_quantized_shared_backbone_takes_a_task_added_afterwards(backbone):
    names = ["adapter", "soft", "lora"]
    models = {name: task_model(backbone, *METHODS[name], classes=3 + k, seed=k) for k, name in enumerate(names)}
    shared = SharedBackbone(copy.deepcopy(backbone))
    for name in names[:2]:
        shared.add(name, copy.deepcopy(models[name]))
    quantize_frozen(shared)
    shared.add("lora", copy.deepcopy(models["lora"]))  # its float base Linears quantize to the shared ones
    assert len(int8_linears(shared)) == 12  # the frozen Linears, once, routed ones included
    assert not any(is_int8(module) for site in shared.modules() if isinstance(site, TaskSite)
                   for module in site.parts.modules())
    assert not any(is_int8(module) for module in shared.heads.modules())

    x = torch.randn(12, 100, 128, generator=torch.Generator().manual_seed(4))
    own = quantize_frozen(copy.deepcopy(models["lora"]))
    with torch.inference_mode():
        [(key, rows, logits)] = shared(x, ["lora"] * len(x))  # the rows alone: the same batch as its own model's
        torch.testing.assert_close(logits, own(x), atol=1e-5, rtol=0)
        keys = [names[i % 3] for i in range(len(x))]
        for key, rows, logits in shared(x, keys):  # mixed: int8 activations scaled over the whole batch
            reference = models[key](x[rows])
            assert relative_error(logits, reference) < RELATIVE
            assert_top1_kept(logits, reference)

    moved = copy.deepcopy(models["lora"])  # one frozen weight moved by two int8 steps
    step = int8_linear(moved.blocks[1].attn.k).weight().q_per_channel_scales()[0].item()
    with torch.no_grad():
        moved.blocks[1].attn.k.weight[0, 0] += 2 * step
    with pytest.raises(NotShared, match="blocks.1.attn.k differs from the backbone"):
        shared.add("moved", moved)
    assert shared.tasks == names


def test_the_classifier_quantized(backbone):
    model = task_model(backbone, "soft", {"experts": 2}, classes=3, seed=5)
    classifier = Classifier(model, ["a", "b", "c"], SINGLE, FeatureConfig(max_length=100), source="run r")
    quantized = classifier.quantized()
    assert quantized.source == "run r (int8)" and quantized.labels == classifier.labels
    assert sum(is_int8(module) for module in quantized.model.modules()) == 12


def test_predict_and_serve_take_quantize_int8(toy_runs, tmp_path):
    """``predict --quantize int8`` scores close to float (the same top label on the toy run's
    test clips written as WAV files is not guaranteed, so close scores are checked); ``--device``
    off the CPU is refused in one line; a quantized TaskSet serves its tasks close to float."""
    import json

    import numpy as np
    import soundfile as sf
    from helpers import run, run_ok

    from softmoa_cli.engine.serve.batcher import Batcher
    from softmoa_cli.engine.serve.tasks import TaskSet

    rng = np.random.default_rng(0)
    clip = tmp_path / "noise.wav"
    sf.write(clip, (rng.normal(size=16000) * 0.1).astype(np.float32), 16000)
    # the toy runs take 48 frames of 32 mel bins; any audio works
    floats = json.loads(run_ok("predict", clip, "--run", toy_runs["soft"], "--json", "-k", "4").stdout)[0]
    int8 = json.loads(run_ok("predict", clip, "--run", toy_runs["soft"], "--json", "-k", "4",
                             "--quantize", "int8").stdout)[0]
    by_label = {p["label"]: p["score"] for p in floats["predictions"]}
    assert max(abs(p["score"] - by_label[p["label"]]) for p in int8["predictions"]) < 0.05
    refused = run("predict", clip, "--run", toy_runs["soft"], "--quantize", "int8", "--device", "cuda")
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert run("predict", clip, "--quantize", "int4").exit_code == 2

    tasks = TaskSet(quantize="int8")
    for method in ("adapter", "lora"):
        tasks.add(method, toy_runs[method])
    assert any(is_int8(m) for m in tasks.groups[0].shared.modules())
    batcher = Batcher(max_batch=8, max_wait_ms=0)
    try:
        windows = torch.randn(3, 48, 32)
        for method in ("adapter", "lora"):
            task, group = tasks.get(method)
            served = batcher.submit(task, group, windows).result(timeout=60).exp()
            own = Run.open(toy_runs[method]).classifier()
            with torch.inference_mode():
                expected = own.task.log_probabilities(own.model(windows).double()).exp()
            assert (served - expected).abs().max() < 0.05
    finally:
        batcher.close()
