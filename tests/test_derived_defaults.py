"""Defaults that depend on the data or the backbone are derived from them, said aloud and recorded
in the run: the reduction rate from the backbone's width, max_length from the clip durations, a
random backbone's dims; a method option given alone means the default method."""

from __future__ import annotations

import pytest
import yaml
from helpers import run, write_wav

from softmoa_cli.engine.petl.methods import bottleneck_units, method_config
from softmoa_cli.engine.petl.widths import default_reduction_rate


def two_classes(root, per_class=6, seconds=0.2):
    for c, name in enumerate(("low", "high")):
        for k in range(per_class):
            write_wav(root / name / f"{name}_{k}.wav", seconds=seconds, seed=10 * c + k)
    return root


@pytest.mark.parametrize(("dim", "method", "units"), [
    (768, "soft", 6), (768, "adapter", 12),  # AST-base: the paper's rates 128 and 64
    (1024, "soft", 8), (1280, "soft", 10),  # wider: the paper's rate too
    (128, "soft", 8), (128, "adapter", 8), (384, "dense", 8), (512, "soft", 8),  # narrower: at least 8 units
])
def test_an_unset_reduction_rate_follows_the_backbone_width(dim, method, units):
    config = method_config(method)
    assert config.reduction_rate is None and bottleneck_units(config, dim) == units
    assert bottleneck_units(method_config(method, reduction_rate=32), dim) == round(dim / 32)  # given: kept
    assert default_reduction_rate(768, 128) == 128


def test_a_method_option_alone_means_the_default_method_and_the_rate_is_said(tmp_path, monkeypatch):
    folder = two_classes(tmp_path / "mine")
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    for option in (["--experts", "8"], ["--slots", "2"], ["--reduction-rate", "32"], ["--normalize"],
                   ["--location", "ffn"], ["--init", "research"]):
        shown = run("finetune", "-d", folder, *option, "--checkpoint", "embedded", "--print-config")
        assert shown.exit_code == 0, (option, shown.output)
        method = yaml.safe_load(shown.stdout)["method"]
        assert method["name"] == "soft", option
    method = yaml.safe_load(run("finetune", "-d", folder, "--experts", "8", "--checkpoint", "embedded",
                                "--print-config").stdout)["method"]
    assert method["experts"] == 8 and method["reduction_rate"] == 16  # the embedded backbone is 128 wide
    other = run("finetune", "-d", folder, "--rank", "4", "--print-config")
    assert other.exit_code == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "--rank 4: unknown key for method 'soft'" in other.stderr and "rank is an option of lora" in other.stderr


def test_a_run_records_and_says_what_it_derived_and_random_means_ast_base(tmp_path, monkeypatch):
    folder = two_classes(tmp_path / "mine", per_class=5)
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    trained = run("finetune", "-d", folder, "--checkpoint", "random", "--method", "adapter", "--epochs", "1",
                  "--batch-size", "4", "--out", tmp_path / "run", "--threads", "2")
    assert trained.exit_code == 0, trained.output
    said = " ".join(trained.stderr.split())
    assert "randomly initialised AST (dim 768, depth 12, heads 12, seed 0; AST-base dims" in said
    assert "method.reduction_rate 64 (12 hidden units per adapter): the paper's rate on a backbone of width 768" in said
    assert "max_length 20 frames (0.20 s) from the clip durations" in said
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["method"]["reduction_rate"] == 64 and saved["data"]["max_length"] == 20
