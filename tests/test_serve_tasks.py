"""Runs served as tasks (engine/serve/tasks.py, batcher.py): runs on copies of one backbone share
it, a full fine-tune is its own, and more tasks cost their parts, not a backbone each; the
batcher mixes windows of every task in its batches and gives each request what the run's own
model gives; a window is held for others at most ``max_wait_ms`` after it was queued; a task
removed while its request waits fails that request only, and a backbone whose last task goes is
let go; a full queue refuses, closing finishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from helpers import random_run, toy_table

from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.runs.run import Run
from softmoa_cli.engine.serve.batcher import Batcher, QueueFull
from softmoa_cli.engine.serve.tasks import TaskSet

FEATURES = torch.from_numpy(toy_table().features[-40:].astype("float32"))  # [40, 48, 32]


@pytest.fixture(scope="module")
def served(toy_runs):
    tasks = TaskSet()
    for method, folder in toy_runs.items():
        tasks.add(method, folder)
    return tasks


def own_log_probabilities(folder, windows):
    classifier = Run.open(folder).classifier()
    with torch.inference_mode():
        return classifier.task.log_probabilities(classifier.model(windows).double())


def test_runs_on_one_backbone_share_it_and_a_full_run_has_its_own(served):
    assert served.names == ["linear", "full", "adapter", "dense", "soft", "lora"]
    sizes = sorted(len(group.tasks) for group in served.groups)
    assert sizes == [1, 5]
    full, group = served.get("full")
    assert list(group.tasks) == [full.key]
    described = served.get("soft")[0].describe()
    assert described["method"] == "soft" and described["labels"] == [f"class{i}" for i in range(4)]
    assert described["task"] == "singlelabel" and described["window_seconds"] == 0.48
    assert described["trainable_params"] > 0
    with pytest.raises(SoftmoaError, match="did you mean 'soft'"):
        served.get("sofy")


def test_mixed_batches_give_each_request_its_runs_scores(served, toy_runs):
    batcher = Batcher(max_batch=16, max_wait_ms=50)
    try:
        # six tasks, requests of 1 to 9 windows: batches of 16 mix tasks and split requests
        requests = []
        for k in range(12):
            method = list(toy_runs)[k % 6]
            windows = FEATURES[(3 * k) % 31:(3 * k) % 31 + 1 + k % 9]
            task, group = served.get(method)
            requests.append((method, windows, batcher.submit(task, group, windows)))
        for method, windows, future in requests:
            torch.testing.assert_close(future.result(timeout=60), own_log_probabilities(toy_runs[method], windows),
                                       atol=1e-5, rtol=0)
    finally:
        batcher.close()


def test_a_full_queue_refuses_and_closing_finishes_what_is_queued(served, toy_runs):
    batcher = Batcher(max_batch=4, max_wait_ms=200, max_queue=8)
    task, group = served.get("adapter")
    first = batcher.submit(task, group, FEATURES[:6])
    with pytest.raises(QueueFull):
        for _ in range(4):
            batcher.submit(task, group, FEATURES[:6])
    batcher.close()
    torch.testing.assert_close(first.result(timeout=60), own_log_probabilities(toy_runs["adapter"], FEATURES[:6]),
                               atol=1e-5, rtol=0)
    with pytest.raises(QueueFull, match="shutting down"):
        batcher.submit(task, group, FEATURES[:1])


def test_removing_a_task_keeps_the_others(toy_runs):
    tasks = TaskSet()
    tasks.add("a", toy_runs["adapter"])
    tasks.add(None, toy_runs["soft"])  # named after its folder
    assert tasks.names == ["a", "soft"]
    with pytest.raises(SoftmoaError, match="served already"):
        tasks.add("a", toy_runs["lora"])
    tasks.remove("a")
    assert tasks.names == ["soft"] and len(tasks.groups) == 1
    batcher = Batcher(max_batch=8, max_wait_ms=0)
    try:
        task, group = tasks.get("soft")
        torch.testing.assert_close(batcher.submit(task, group, FEATURES[:5]).result(timeout=60),
                                   own_log_probabilities(toy_runs["soft"], FEATURES[:5]), atol=1e-5, rtol=0)
    finally:
        batcher.close()
    tasks.remove("soft")
    assert tasks.groups == []


def test_a_task_removed_while_its_request_waits_fails_that_request_alone(toy_runs):
    tasks = TaskSet()
    tasks.add("soft", toy_runs["soft"])
    tasks.add("lora", toy_runs["lora"])
    batcher = Batcher(max_batch=64, max_wait_ms=2000)  # both requests wait in one batch
    try:
        (soft, group), (lora, _) = tasks.get("soft"), tasks.get("lora")
        kept = batcher.submit(soft, group, FEATURES[:3])
        dropped = batcher.submit(lora, group, FEATURES[3:5])
        tasks.remove("lora")
        torch.testing.assert_close(kept.result(timeout=60), own_log_probabilities(toy_runs["soft"], FEATURES[:3]),
                                   atol=1e-5, rtol=0)
        with pytest.raises(KeyError):
            dropped.result(timeout=60)
    finally:
        batcher.close()


def test_a_backbone_whose_last_task_is_removed_is_let_go(toy_runs):
    """Its batcher worker stops and nothing holds its model any more (the worker used to keep
    the group, and so a whole backbone, until the server stopped); a request that still comes
    for it fails as for a removed task."""
    import gc
    import weakref

    tasks = TaskSet()
    tasks.add("a", toy_runs["adapter"])
    batcher = Batcher(max_batch=8, max_wait_ms=0)
    try:
        task, group = tasks.get("a")
        batcher.submit(task, group, FEATURES[:2]).result(timeout=60)
        worker, model = batcher._lanes[id(group)].thread, weakref.ref(group.shared)
        tasks.remove("a")
        worker.join(timeout=30)
        assert not worker.is_alive() and not batcher._lanes
        with pytest.raises(KeyError):
            batcher.submit(task, group, FEATURES[:1]).result(timeout=60)
        del group
        deadline = time.monotonic() + 30
        while batcher._lanes and time.monotonic() < deadline:  # the late request's worker stops too
            time.sleep(0.1)
        gc.collect()
        assert model() is None
    finally:
        batcher.close()


def test_a_window_that_waited_through_a_forward_pass_is_not_held_again(served):
    """``max_wait_ms`` counts from when a window was queued: one that waited while the worker ran
    the previous batch goes into the next batch at once (it used to wait ``max_wait_ms`` more)."""
    batcher = Batcher(max_batch=64, max_wait_ms=1000)
    task, group = served.get("adapter")
    try:
        with group.lock:  # the worker's forward pass waits here, as if it were long
            first = batcher.submit(task, group, FEATURES[:2])
            time.sleep(1.3)  # the first batch is taken (after 1 s); its forward pass waits for the lock
            second = batcher.submit(task, group, FEATURES[2:4])
            time.sleep(1.3)  # the second window has waited longer than max_wait_ms by now
            released = time.monotonic()
        first.result(timeout=60)
        second.result(timeout=60)
        assert time.monotonic() - released < 0.8
    finally:
        batcher.close()


def rss_anon() -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("RssAnon:"))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads resident memory from /proc")
def test_more_tasks_on_a_backbone_cost_their_parts_not_a_backbone_each(tmp_path, monkeypatch):
    """Loading a task builds its run's whole model (a copy of the backbone) and keeps only its
    parts and head: nothing keeps the copy, and ``add`` (and ``remove``) hand the freed heap back
    to the system (glibc kept it: on an AST-base server, 8 tasks held 1.3x the memory of one;
    benchmarks/RESULTS.md)."""
    import softmoa_cli.engine.serve.tasks as tasks_module
    from softmoa_cli.engine.models.ast import AST, ASTConfig
    from softmoa_cli.engine.models.pretrained import Pretrained, save_model
    from softmoa_cli.engine.task import SINGLE

    trims = []
    release = tasks_module.release_freed_memory
    monkeypatch.setattr(tasks_module, "release_freed_memory", lambda: (trims.append(1), release()))
    torch.manual_seed(0)
    backbone = AST(ASTConfig(dim=768, depth=2, heads=12, mlp_dim=3072, max_length=100, num_classes=1))
    size = sum(p.numel() * p.element_size() for p in backbone.parameters())  # about 57 MB
    folder = save_model(Pretrained(backbone, [], SINGLE, "test", {"has_head": False}), tmp_path / "backbone")
    del backbone
    methods = [{"name": "adapter"}, {"name": "lora", "rank": 4}, {"name": "soft", "experts": 3}, {"name": "linear"}]
    runs = [random_run(tmp_path / f"run{k}", method, k, backbone=str(folder)) for k, method in enumerate(methods)]
    tasks = TaskSet()
    tasks.add(None, runs[0])
    before = rss_anon()
    for run in runs[1:]:
        tasks.add(None, run)
    assert len(tasks.groups) == 1
    assert rss_anon() - before < 0.25 * size, f"{(rss_anon() - before) / 2**20:.0f} MiB for 3 more tasks"
    tasks.remove("run1")
    assert len(trims) == 5
