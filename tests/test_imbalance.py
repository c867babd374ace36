"""Unbalanced data: balanced sampling draws each class about equally, class
weights are inverse label frequencies normalised to mean 1 and weigh the loss as a hand
computation says, mixup mixes clips and label vectors by the drawn lambda; for both tasks.
With all three on a multi-label run learns and resumes exactly after a kill; with all three
off a step's loss is plain cross-entropy (BCE) and the epoch order is today's permutation."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import Kill, KillAt, _comparable, run, toy_config, toy_table

from softmoa_cli.engine.task import MULTI, SINGLE
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.runs.files import ADAPTER_WEIGHTS
from softmoa_cli.engine.train import finetune
from softmoa_cli.engine.data.splits import plan_splits
from softmoa_cli.engine.data.table import FeatureTable
from softmoa_cli.engine.train.backbone import resolve_backbone
from softmoa_cli.engine.distributed import World
from softmoa_cli.engine.train.loop import FoldJob, FoldTrainer, step_seed
from softmoa_cli.engine.train.sampling import class_weights, epoch_order, mixup, sample_weights

ALL_ON = {"balanced_sampling": True, "mixup": 0.4}  # one correction (balancing or class weights) at a time
WEIGHTED = {"class_weights": True, "mixup": 0.4}
ALL_OFF = {"balanced_sampling": False, "class_weights": False, "mixup": 0}


def subset(table: FeatureTable, indices: np.ndarray) -> FeatureTable:
    """The clips ``indices`` of ``table``, in that order."""
    return replace(table, features=table.features[indices], labels=table.labels[indices],
                   split=table.split[indices], fold=table.fold[indices])


def imbalanced_table() -> FeatureTable:
    """toy_table's two classes with class 1 cut to a ninth of class 0 among the training clips
    (180 : 20); the 40 test clips as they were (20 : 20)."""
    table = toy_table(n=400, classes=2)
    train = np.flatnonzero(table.split == "train")
    ones = train[table.labels[train] == 1][:20]
    keep = np.concatenate([train[table.labels[train] == 0], ones, np.flatnonzero(table.split == "test")])
    return subset(table, np.sort(keep))


def multi_table(n: int = 240, seed: int = 0) -> FeatureTable:
    """Multi-label noise with a band of energy per label: class 0 on 9 clips in 10, classes 1-3
    on about 1 in 10 each, a quarter of the clips with a second label. Clips 0-159 train,
    160-199 valid, 200-239 test."""
    rng = np.random.default_rng(seed)
    classes = 4
    labels = np.zeros((n, classes), dtype=np.uint8)
    first = np.where(np.arange(n) % 12 < 9, 0, 1 + np.arange(n) % 3)  # 9 of 12 clips class 0, then 1, 2, 3
    labels[np.arange(n), first] = 1
    second = rng.random(n) < 0.25
    labels[second, rng.integers(1, classes, size=n)[second]] = 1
    x = rng.normal(size=(n, 48, 32)).astype(np.float32) * 0.5
    for c in range(classes):
        x[labels[:, c] == 1, :, 6 * c:6 * c + 4] += 1.5
    split = np.array(["train"] * 160 + ["valid"] * 40 + ["test"] * 40, dtype=object)
    return FeatureTable("toy-multi", x.astype(np.float16), labels, [f"class{i}" for i in range(classes)], split,
                        np.zeros(n, dtype=np.int64), FeatureConfig(num_mel_bins=32, max_length=48))


def drawn(table: FeatureTable, tmp_path, monkeypatch, **training) -> tuple[list[np.ndarray], int]:
    """The batches (clip indices) a run's training steps get, without training; and the training clips."""
    batches = []

    def record(self, batch, epoch, step):
        batches.append(batch)
        return [0.0, 0.0, float(len(batch))]

    monkeypatch.setattr(FoldTrainer, "train_step", record)
    config = toy_config("linear", **({"epochs": 4} | training))
    finetune(config, tmp_path / "run", table=table)
    plan, = plan_splits(table, config.data)
    assert all(np.isin(b, plan.train).all() for b in batches)
    return batches, len(plan.train)


def trainer(tmp_path, table: FeatureTable, method: str = "linear", data: dict | None = None,
            **training) -> FoldTrainer:
    """A fold trainer of the toy config on ``table`` (one process, CPU)."""
    config = toy_config(method, data=data, **training)
    split, = plan_splits(table, config.data)
    backbone = resolve_backbone(config.model, table.feature_config, config.training.seed)
    return FoldTrainer(FoldJob(config, table, split, backbone.pretrained, "random", tmp_path, World()))


def first_batch(tr: FoldTrainer) -> np.ndarray:
    """The first step's clip indices, as FoldTrainer.run takes them."""
    t = tr.t
    order = epoch_order(len(tr.job.split.train), t.seed, tr.fold, 0, tr.sample_weights)
    return tr.job.split.train[order[:t.batch_size]]


def logits_before_the_step(tr: FoldTrainer, x: torch.Tensor) -> torch.Tensor:
    """The logits of ``x`` from a copy of the model as it is before ``train_step`` (train mode)."""
    model = copy.deepcopy(tr.model).train()
    with torch.no_grad():
        return model(x).double()


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, elementwise, by its formula."""
    return logits.clamp(min=0) - logits * targets + torch.log1p(torch.exp(-logits.abs()))


# --- balanced sampling ---------------------------------------------------------------------------


def test_balanced_sampling_draws_both_classes_about_equally_from_a_9_to_1_table(tmp_path, monkeypatch):
    table = imbalanced_table()
    plain, n = drawn(table, tmp_path / "plain", monkeypatch)
    balanced, _ = drawn(table, tmp_path / "balanced", monkeypatch, balanced_sampling=True)
    assert len(balanced) == len(plain) == 4 * int(np.ceil(n / 16))  # steps per epoch unchanged
    assert sum(map(len, balanced)) == sum(map(len, plain)) == 4 * n
    share = lambda batches: table.labels[np.concatenate(batches)].mean()  # of class 1
    assert share(plain) == pytest.approx(0.1, abs=0.01)  # every clip once an epoch: 9 to 1
    assert 0.42 < share(balanced) < 0.58, share(balanced)  # 720 draws: sd 0.019 around 0.5
    drawn_twice = np.concatenate(balanced[:int(np.ceil(n / 16))])
    assert len(np.unique(drawn_twice)) < n  # with replacement


def test_balanced_sampling_draws_labels_about_equally_from_a_multilabel_table(tmp_path, monkeypatch):
    table = multi_table()
    train = table.labels[table.split == "train"]
    assert train.sum(axis=0)[0] > 4 * train.sum(axis=0)[1:].max()  # class 0 dominates
    plain, _ = drawn(table, tmp_path / "plain", monkeypatch, epochs=6)
    balanced, _ = drawn(table, tmp_path / "balanced", monkeypatch, epochs=6, balanced_sampling=True)
    per_label = lambda batches: table.labels[np.concatenate(batches)].sum(axis=0)
    assert per_label(plain)[0] > 4 * per_label(plain)[1:].max()
    counts = per_label(balanced).astype(float)
    # Each label's clips weigh 1 in all; a clip with a second label also draws that label, so
    # class 0 (a second label on a quarter of its clips) is drawn more than the others, as
    # the weights say: the expected draws per label are E = draws * (labels^T p).
    weights = train.astype(float) @ (1 / train.sum(axis=0))
    expected = len(np.concatenate(balanced)) * (train.T.astype(float) @ (weights / weights.sum()))
    assert np.abs(counts - expected).max() < 4 * np.sqrt(expected).max(), (counts, expected)
    assert counts.max() < 2 * counts.min(), counts  # against 9 to 1 without balancing


def test_sample_weights_are_the_sum_of_inverse_label_counts():
    single = np.array([0, 0, 0, 1, 2, 2])
    assert sample_weights(single, 4).tolist() == [1 / 3] * 3 + [1.0] + [0.5] * 2
    multi = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 0]], dtype=np.uint8)  # counts 3, 1, 1
    assert sample_weights(multi, 3) == pytest.approx([1 / 3, 1 / 3 + 1, 1 / 3 + 1, 0])
    order = epoch_order(4, 3, 0, 1, sample_weights(multi, 3))
    assert len(order) == 4 and 3 not in order  # a clip without labels is never drawn
    assert (order == epoch_order(4, 3, 0, 1, sample_weights(multi, 3))).all()  # seeded by (seed, fold, epoch)


# --- class weights -------------------------------------------------------------------------------


def test_class_weights_are_inverse_frequencies_normalised_to_mean_one():
    single = np.array([0] * 9 + [1] * 3 + [2])  # counts 9, 3, 1; class 3 absent
    inverse = np.array([1 / 9, 1 / 3, 1.0])
    assert class_weights(single, 4) == pytest.approx([*(inverse / inverse.mean()), 1.0])
    multi = np.array([[1, 1], [1, 0], [1, 0], [1, 0]], dtype=np.uint8)  # counts 4, 1
    assert class_weights(multi, 2) == pytest.approx([0.4, 1.6])
    assert class_weights(multi, 2).mean() == pytest.approx(1.0)


def test_class_weights_weigh_each_clips_cross_entropy_by_its_class(tmp_path):
    table = imbalanced_table()
    tr = trainer(tmp_path, table, class_weights=True)
    plan = tr.job.split
    counts = np.bincount(table.labels[plan.train], minlength=2)
    weights = (1 / counts) / (1 / counts).mean()
    assert tr.class_weights.tolist() == pytest.approx(weights.tolist())
    batch = np.concatenate([plan.train[table.labels[plan.train] == 0][:12], plan.train[table.labels[plan.train] == 1][:4]])
    x, y = table.batch(batch)
    log_probs = logits_before_the_step(tr, x).log_softmax(-1)
    nll = -log_probs[torch.arange(16), y]
    loss, correct, clips = tr.train_step(batch, 0, 0)
    assert loss == pytest.approx(float((torch.from_numpy(weights)[y] * nll).sum()), rel=1e-5)
    assert loss != pytest.approx(float(nll.sum()), rel=1e-3)  # the weights matter
    assert clips == 16 and correct == float((log_probs.argmax(-1) == y).sum())


def test_class_weights_weigh_each_classes_binary_cross_entropy(tmp_path):
    table = multi_table()
    tr = trainer(tmp_path, table, class_weights=True)
    counts = table.labels[tr.job.split.train].sum(axis=0)
    weights = torch.from_numpy((1 / counts) / (1 / counts).mean())
    batch = first_batch(tr)
    x, y = table.batch(batch)
    terms = bce(logits_before_the_step(tr, x), y.double())  # [16, classes]
    loss, _, _ = tr.train_step(batch, 0, 0)
    assert loss == pytest.approx(float((terms * weights).mean(-1).sum()), rel=1e-5)
    assert loss != pytest.approx(float(terms.mean(-1).sum()), rel=1e-3)


# --- mixup ---------------------------------------------------------------------------------------


def test_mixup_mixes_features_and_label_vectors_by_the_drawn_lambda():
    x = torch.arange(4 * 3, dtype=torch.float32).reshape(4, 3)
    multi = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.float32)
    rng = np.random.default_rng(7)
    lam, perm = rng.beta(0.5, 0.5), torch.from_numpy(rng.permutation(4))
    mixed = mixup(x, multi, 3, 0.5, seed=7, task=MULTI)
    assert mixed.lam == lam and mixed.perm.tolist() == perm.tolist() and 0 < lam < 1
    assert torch.allclose(mixed.x, lam * x + (1 - lam) * x[perm])
    assert torch.allclose(mixed.targets, lam * multi + (1 - lam) * multi[perm])
    assert torch.equal(mixed.dominant, multi if lam >= 0.5 else multi[perm])
    single = torch.tensor([2, 0, 1, 1])
    mixed = mixup(x, single, 3, 0.5, seed=7, task=SINGLE)
    hot = F.one_hot(single, 3).float()
    assert torch.allclose(mixed.targets, lam * hot + (1 - lam) * hot[perm])
    assert torch.allclose(mixed.targets.sum(-1), torch.ones(4))  # class probabilities


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_mixup_step_trains_on_the_mixed_batch_with_soft_targets(tmp_path, multi_label):
    table = multi_table() if multi_label else toy_table()
    tr = trainer(tmp_path, table, mixup=0.4)
    batch = first_batch(tr)
    x, y = table.batch(batch)
    rng = np.random.default_rng(step_seed(tr.t.seed, tr.fold, 0, 0, 2))  # the step's draw
    lam, perm = rng.beta(0.4, 0.4), torch.from_numpy(rng.permutation(len(batch)))
    hot = y.double() if multi_label else F.one_hot(y, 4).double()
    targets = lam * hot + (1 - lam) * hot[perm]
    logits = logits_before_the_step(tr, lam * x + (1 - lam) * x[perm])
    dominant = y if lam >= 0.5 else y[perm]
    if multi_label:
        expected = bce(logits, targets).mean(-1).sum()
        right = dominant.gather(1, logits.argmax(-1, keepdim=True)).sum()
    else:
        expected = -(targets * logits.log_softmax(-1)).sum()
        right = (logits.argmax(-1) == dominant).sum()
    loss, correct, clips = tr.train_step(batch, 0, 0)
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert correct == float(right) and clips == len(batch)
    assert 0.02 < lam < 0.98  # a real mixture in this draw


# --- all three on, all three off -----------------------------------------------------------------


@pytest.mark.parametrize("flags", [ALL_ON, WEIGHTED], ids=["balanced", "class-weights"])
def test_a_multilabel_run_with_a_correction_and_mixup_learns_and_resumes_exactly(tmp_path, flags):
    table = multi_table()
    config = toy_config("soft", epochs=4, **flags)  # 10 steps an epoch, checkpoints every 4
    _, straight = finetune(config, tmp_path / "straight", table=table)
    fold = straight.to_dict()["folds"]["all"]
    chance = float(table.labels[table.split == "test"].mean(axis=0).mean())
    assert all(np.isfinite(e["train_loss"]) for e in fold["epochs"])
    assert straight.to_dict()["task"] == "multilabel" and fold["test"]["mAP"] > chance + 0.3, (fold["test"]["mAP"], chance)
    with pytest.raises(Kill):
        finetune(config, tmp_path / "killed", callback=KillAt(17), table=table)  # epoch 2, after its step 4 checkpoint
    assert (tmp_path / "killed" / "state.pt").exists() and not (tmp_path / "killed" / ADAPTER_WEIGHTS).exists()
    _, resumed = finetune(config, tmp_path / "killed", table=table)
    assert _comparable(resumed) == _comparable(straight)


DDP_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
from test_imbalance import ALL_ON, multi_table
from helpers import toy_config
from softmoa_cli.engine.train import finetune

run, metrics = finetune(toy_config("soft", epochs=2, device="cpu", threads=1, **ALL_ON), sys.argv[1], None,
                        multi_table())
if metrics:
    json.dump(metrics.to_dict(), open(sys.argv[2], "w"))
"""


@pytest.mark.slow  # starts torchrun
def test_two_gloo_processes_sample_weigh_and_mix_like_one(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    found = {}
    for name, launcher in {"single": [sys.executable], "ddp": [sys.executable, "-m", "torch.distributed.run",
                                                                "--standalone", "--nproc-per-node=2"]}.items():
        out = tmp_path / f"{name}.json"
        done = subprocess.run([*launcher, str(script), str(tmp_path / name), str(out)], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        found[name] = json.loads(out.read_text())["folds"]["all"]
    one, two = found["single"], found["ddp"]
    for a, b in zip(one["epochs"], two["epochs"]):  # the same draws, mixtures and weights on every rank
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["train_accuracy"] == a["train_accuracy"] and b["valid_mAP"] == pytest.approx(a["valid_mAP"], abs=1e-6)
    assert two["test"]["mAP"] == pytest.approx(one["test"]["mAP"], abs=1e-5)


@pytest.mark.parametrize("multi_label", [False, True])
def test_with_all_three_off_a_step_is_plain_cross_entropy_on_todays_order(tmp_path, multi_label):
    table = multi_table() if multi_label else toy_table()
    tr = trainer(tmp_path, table, data={"spec_augment": {"freq_mask": 0, "time_mask": 0}}, **ALL_OFF)
    assert tr.sample_weights is None and tr.class_weights is None
    train, t = tr.job.split.train, tr.t
    order = epoch_order(len(train), t.seed, tr.fold, 0, tr.sample_weights)
    assert (order == np.random.default_rng([t.seed, tr.fold, 0]).permutation(len(train))).all()
    batch = train[order[:t.batch_size]]
    x, y = table.batch(batch)
    model = copy.deepcopy(tr.model).train()
    with torch.no_grad():
        logits = model(x).float()
    losses = (F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(-1) if multi_label
              else F.cross_entropy(logits, y, reduction="none"))
    loss, _, _ = tr.train_step(batch, 0, 0)
    assert loss == losses.sum().double().item()  # exactly


# --- the flags -----------------------------------------------------------------------------------


def test_the_flags_set_the_config_and_are_checked():
    result = run("finetune", "--preset", "fsdd-cpu", "--class-weights", "--mixup", "0.3", "--print-config")
    assert result.exit_code == 0, result.output
    training = yaml.safe_load(result.stdout)["training"]
    assert (training["balanced_sampling"], training["class_weights"], training["mixup"]) == (False, True, 0.3)
    both = run("finetune", "--preset", "fsdd-cpu", "--balanced-sampling", "--class-weights", "--print-config")
    assert both.exit_code == 2 and both.stderr.strip().splitlines() == [
        "error: --balanced-sampling and --class-weights both correct for unbalanced labels (together they favour "
        "rare classes twice); use one of the two"]
    result = run("finetune", "--preset", "fsd50k", "--no-balancing", "--print-config")
    assert result.exit_code == 0, result.output
    training = yaml.safe_load(result.stdout)["training"]
    assert (training["balanced_sampling"], training["class_weights"], training["mixup"]) == (False, False, 0.5)
    result = run("finetune", "--preset", "fsdd-cpu", "--mixup", "-1", "--print-config")
    assert result.exit_code != 0 and "--mixup -1" in result.output and "greater than or equal to 0" in result.output
    for command in ("finetune", "ablate"):
        shown = " ".join(run(command, "--help").stdout.split())
        assert all(flag in shown for flag in ("--balanced-sampling", "--class-weights", "--mixup")), command
