"""``softmoa bench`` at tiny dims: every method is timed, its parameters and FLOPs are the ones
counted by hand here, and bad method specs fail with one line. No wall-clock assertions."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from softmoa_cli.cli.app import build_app

TINY = ["--dim", "64", "--depth", "2", "--heads", "4", "--mlp-dim", "128", "--frames", "100", "--batch", "2",
        "--warmup", "1", "--repeats", "2", "--threads", "1"]
SPECS = ["linear", "adapter:reduction_rate=64", "dense:experts=3,reduction_rate=16", "soft:experts=3,slots=2",
         "lora:rank=4,targets=q+v", "full"]


def expected_costs() -> dict[str, tuple[int, int, int]]:
    """Spec -> (trainable parameters, total parameters, forward FLOPs per example) of SPECS at TINY's
    dims, counted by hand: 2 FLOPs per multiply-add of the matmuls and the patch convolution."""
    d, depth, mlp, classes = 64, 2, 128, 10
    patches = 12 * 9  # 16x16 patches at stride 10: (128 mel bins - 16) / 10 + 1 by (100 frames - 16) / 10 + 1
    m = patches + 2  # tokens: the patches, [CLS] and [DIST]
    norm, head = 2 * d, d * classes + classes  # a LayerNorm; the new head, Linear on the mean token
    block = 2 * norm + 4 * (d * d + d) + (d * mlp + mlp) + (mlp * d + d)  # norms, q k v proj, the MLP
    backbone = (16 * 16 * d + d) + 2 * d + m * d + depth * block + norm + head  # patch conv, [CLS] [DIST], positions
    flops = 2 * (patches * 16 * 16 * d + depth * (4 * m * d * d + 2 * m * m * d + 2 * m * d * mlp) + d * classes)

    def experts(n: int, r: int) -> int:
        """Parameters of n bottleneck experts d -> r -> d, with biases."""
        return n * (d * r + r + r * d + d)

    # Per block: (parameters, FLOPs) of the module added beside the attention (Pfeiffer), or of LoRA's pairs.
    adapter = experts(1, 1), 2 * m * 2 * d * 1  # r = 64 / 64
    dense = d * 3 + 3 + experts(3, 4), 2 * m * (d * 3 + 2 * 3 * d * 4)  # router d -> 3; r = 64 / 16
    # phi [d, 3, 2]; r = 8, the least a narrow backbone keeps; routing: logits, slots, combine
    soft = d * 3 * 2 + experts(3, 8), 2 * (3 * m * d * 3 * 2 + 3 * 2 * 2 * d * 8)
    lora = 2 * 4 * (d + d), 2 * 2 * m * 4 * (d + d)  # q and v, rank 4

    def added(module: tuple[int, int], feeding_norm: bool) -> tuple[int, int, int]:
        params, module_flops = module
        trainable = depth * (params + norm * feeding_norm) + norm + head  # + the final LayerNorm and the head
        return trainable, backbone + depth * params, flops + depth * module_flops

    return {"linear": (head, backbone, flops), "adapter:reduction_rate=64": added(adapter, True),
            "dense:experts=3,reduction_rate=16": added(dense, True), "soft:experts=3,slots=2": added(soft, True),
            "lora:rank=4,targets=q+v": added(lora, False), "full": (backbone, backbone, flops)}


def test_bench_reports_every_method(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(build_app(), ["bench", "--methods", ",".join(SPECS), *TINY,
                                              "--compare-transformers", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {row["label"]: row for row in report["methods"]}
    assert list(rows) == [*SPECS, "transformers"]
    assert report["reference"] == "adapter:reduction_rate=64"
    assert report["engine_over_transformers_forward"] > 0
    expected = expected_costs()
    for spec in SPECS:
        row = rows[spec]
        assert len(row["step_samples_ms"]) == len(row["forward_samples_ms"]) == 2
        assert row["step_ms"] > 0 and row["forward_ms"] > 0 and row["peak_bytes"] > 0
        assert (row["trainable_params"], row["total_params"], row["flops"]) == expected[spec], spec
    assert rows["lora:rank=4,targets=q+v"]["method"]["targets"] == ["q", "v"]
    assert rows["adapter:reduction_rate=64"]["step_ratio"] == 1.0
    assert rows["full"]["peak_bytes"] > rows["linear"]["peak_bytes"]  # gradients and AdamW state of every weight
    assert rows["transformers"]["forward_ms"] > 0 and rows["transformers"]["step_ms"] is None


@pytest.mark.parametrize("methods, words", [
    ("adapter,nosuch", ["nosuch", "unknown method"]),
    ("soft:experts=0", ["soft:experts=0", "experts", "greater than or equal to 1"]),
    ("dense:expertz=7", ["expertz", "Extra inputs"]),
    ("adapter:reduction_rate", ["expected key=value"]),
    ("experts=7,soft", ["no method name"]),
    ("soft,linear", ["reference method 'adapter'"]),
    ("adapter,adapter", ["listed twice"]),
])
def test_bad_method_specs_fail_with_one_line(methods, words):
    result = CliRunner().invoke(build_app(), ["bench", "--methods", methods, *TINY])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.output


def test_bench_with_activation_checkpointing_compares_each_method_to_itself():
    result = CliRunner().invoke(build_app(), ["bench", "--methods", "soft:experts=3,linear", "--reference", "soft",
                                              "--activation-checkpointing", *TINY, "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # --json: the document on stdout, instead of the table
    assert report["settings"]["activation_checkpointing"] is True
    assert "torch.profiler" in report["memory_measure"] and "allocated" in report["memory_measure"]
    rows = {row["label"]: row for row in report["methods"]}
    assert list(rows) == ["soft:experts=3", "soft:experts=3 +checkpointing", "linear", "linear +checkpointing"]
    plain, checkpointed = rows["soft:experts=3"], rows["soft:experts=3 +checkpointing"]
    assert not plain["activation_checkpointing"] and checkpointed["activation_checkpointing"]
    per_round = [step / plain_step for step, plain_step in zip(checkpointed["step_samples_ms"], plain["step_samples_ms"])]
    assert len(per_round) == 2 and checkpointed["step_ratio_to_plain"] == pytest.approx(sum(per_round) / 2)
    assert checkpointed["peak_ratio_to_plain"] == checkpointed["peak_bytes"] / plain["peak_bytes"]
    # Of 2 blocks the first keeps only its input: the step's own memory falls, the weights stay.
    assert 0.3 < checkpointed["step_bytes_ratio_to_plain"] < 0.9
    assert plain["peak_bytes"] - plain["step_bytes"] == checkpointed["peak_bytes"] - checkpointed["step_bytes"]
    # The linear probe has no backward through the blocks: nothing to recompute, the same memory.
    assert rows["linear +checkpointing"]["step_bytes"] == rows["linear"]["step_bytes"]
    assert "activation checkpointing, soft:experts=3: step time" in result.output


def test_cpu_step_memory_is_the_peak_of_the_recorded_allocations():
    import torch

    from softmoa_cli.engine.bench.memory import cpu_step_bytes, peak_of
    from softmoa_cli.engine.bench.subjects import training_subject

    assert peak_of([(3, -5), (1, 10), (2, 4), (4, 8)]) == 17  # sorted by time: 10, 14, 9, 17

    class Known(torch.nn.Module):
        """A step allocating 4 MB, then 8 MB more, then freeing both: a peak of 12 MB."""

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            first = torch.ones(1_000_000)
            second = torch.ones(2_000_000)
            return (self.weight * (first.sum() + second.sum())).expand(x.shape[0], 2)

    subject = training_subject("known", Known(), torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    assert 12_000_000 <= cpu_step_bytes(subject) < 12_000_000 + 2**16  # + the loss's scalars and the gradient
