"""One frozen backbone carrying many tasks (engine/serve/shared.py): a batch that mixes rows of
every method scores each row as that task's own model does; a task that changed frozen weights
is refused; removing a task leaves the others as they were."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import tiny_ast_config

from softmoa_cli.engine.models.checkpoint import Pretrained
from softmoa_cli.engine.models.families import build_backbone
from softmoa_cli.engine.petl.build import build_model
from softmoa_cli.engine.petl.methods import method_config
from softmoa_cli.engine.serve.shared import NotShared, SharedBackbone, TaskNorm, TaskSite
from softmoa_cli.engine.task import SINGLE

METHODS = {
    "adapter": ("adapter", {}),
    "houlsby": ("adapter", {"adapter_config": "houlsby", "kind": "convpass"}),
    "sequential": ("adapter", {"placement": "sequential", "location": "ffn"}),
    "bare-sequential": ("adapter", {"placement": "sequential", "residual": False}),
    "dense": ("dense", {"experts": 3}),
    "soft": ("soft", {"experts": 4, "slots": 2}),
    "lora": ("lora", {"rank": 2, "targets": ("q", "v", "proj")}),
    "linear": ("linear", {}),
}


def pretrained(backbone) -> Pretrained:
    """A copy of ``backbone`` as ``build_model`` takes it (which changes the model it is given)."""
    return Pretrained(copy.deepcopy(backbone), [], SINGLE, "test")


def task_model(backbone, method: str, options: dict, classes: int, seed: int):
    """A task's model on a copy of ``backbone``: its trainable tensors drawn at random (as if
    trained: adapters, norms and head all away from their start)."""
    model = build_model(pretrained(backbone), method_config(method, **options), classes)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def tasks():
    torch.manual_seed(0)
    backbone = build_backbone(tiny_ast_config()).eval()
    models = {name: task_model(backbone, method, options, classes=3 + k, seed=k)
              for k, (name, (method, options)) in enumerate(METHODS.items())}
    return backbone, models


def test_a_mixed_batch_scores_each_row_as_its_own_model(tasks):
    backbone, models = tasks
    shared = SharedBackbone(copy.deepcopy(backbone))
    for name, model in models.items():
        shared.add(name, copy.deepcopy(model))
    names = list(models)
    keys = [names[i % len(names)] for i in (0, 5, 1, 7, 2, 2, 6, 3, 4, 0, 7, 5)]  # every task, unordered
    x = torch.randn(len(keys), 100, 128)
    with torch.inference_mode():
        groups = shared(x, keys)
        assert sorted(key for key, _, _ in groups) == sorted(set(keys))
        for key, rows, logits in groups:
            assert [keys[i] for i in rows] == [key] * len(rows)
            expected = models[key](x[rows])
            assert logits.shape == expected.shape == (len(rows), 3 + names.index(key))
            torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_a_batch_of_one_task_is_computed_as_its_own_model(tasks):
    """One task's rows alone run through its parts on the whole batch: no rows picked out, and
    the very numbers of its own model."""
    backbone, models = tasks
    shared = SharedBackbone(copy.deepcopy(backbone))
    for name, model in models.items():
        shared.add(name, copy.deepcopy(model))
    x = torch.randn(5, 100, 128)
    with torch.inference_mode():
        for name, model in models.items():
            [(key, rows, logits)] = shared(x, [name] * 5)
            assert key == name and rows.tolist() == list(range(5))
            assert torch.equal(logits, model(x)), name


def test_the_frozen_layers_are_held_once(tasks):
    backbone, models = tasks
    shared = SharedBackbone(copy.deepcopy(backbone))
    for name, model in models.items():
        shared.add(name, copy.deepcopy(model))
    frozen = sum(p.numel() for p in backbone.parameters()) - sum(p.numel() for p in backbone.head.parameters())
    trained = sum(p.numel() for m in models.values() for p in m.parameters() if p.requires_grad)
    # the parameters held: the frozen backbone once (its unused head too) plus what each task trained
    held = sum(p.numel() for p in shared.parameters())
    assert held == frozen + sum(p.numel() for p in backbone.head.parameters()) + trained
    sites = [m for m in shared.modules() if isinstance(m, TaskSite)]
    norms = [m for m in shared.modules() if isinstance(m, TaskNorm)]
    assert sites and norms
    assert {len(site.parts) for site in sites} <= set(range(1, len(models)))  # no task has a part everywhere


def test_a_task_that_changed_frozen_weights_is_refused_and_changes_nothing(tasks):
    backbone, models = tasks
    shared = SharedBackbone(copy.deepcopy(backbone))
    shared.add("adapter", copy.deepcopy(models["adapter"]))
    before = {name: p.clone() for name, p in shared.state_dict().items()}
    full = task_model(backbone, "full", {}, classes=3, seed=9)
    with pytest.raises(NotShared, match="differs from the backbone"):
        shared.add("full", full)
    other_length = build_model(pretrained(backbone), method_config("adapter"), 3, max_length=64).eval()
    with pytest.raises(NotShared):
        shared.add("short", other_length)
    after = shared.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert shared.tasks == ["adapter"]


def test_removing_a_task_leaves_the_others_as_they_were(tasks):
    backbone, models = tasks
    shared = SharedBackbone(copy.deepcopy(backbone))
    for name in ("soft", "lora", "sequential"):
        shared.add(name, copy.deepcopy(models[name]))
    shared.remove("lora")
    assert shared.tasks == ["soft", "sequential"]
    assert all("lora" not in site.parts for site in shared.modules() if isinstance(site, TaskSite))
    x = torch.randn(4, 100, 128)
    with torch.inference_mode():
        for key, rows, logits in shared(x, ["soft", "sequential", "sequential", "soft"]):
            torch.testing.assert_close(logits, models[key](x[rows]), atol=1e-5, rtol=0)
        with pytest.raises(KeyError, match="lora"):
            shared(x, ["soft", "lora", "soft", "soft"])
