"""Runs served as tasks (engine/serve/tasks.py, batcher.py): runs on copies of one backbone share
it, a full fine-tune is its own; the batcher mixes windows of every task in its batches and
gives each request what the run's own model gives; a full queue refuses, closing finishes."""

from __future__ import annotations

import pytest
import torch
from helpers import toy_table

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
