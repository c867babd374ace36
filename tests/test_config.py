"""Presets and flags: every shipped preset validates; bad ones fail with one line naming the
key, the value and what is allowed; flags override presets; --print-config shows the result."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import run

from softmoa_cli.config import load_config
from softmoa_cli.config.presets import PRESETS_DIR
from softmoa_cli.engine.config import ConfigError, build_config, dump_config

PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


def test_the_benchmark_and_cpu_presets_exist():
    assert {p.stem for p in PRESETS} >= {"esc50", "us8k", "speechcommands", "fsc", "fsdd-cpu"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_each_preset_validates_and_opens_with_its_command(path):
    config = load_config(path)
    assert config.data.dataset in path.stem and config.method.name == "soft"
    assert path.read_text().startswith("#") and "softmoa finetune" in path.read_text().split("\ndata:")[0]
    assert build_config(yaml.safe_load(dump_config(config))) == config  # the printed config round-trips


def test_benchmark_presets_carry_the_research_recipe():
    expected = {"esc50": (500, 32, 50, 24, 80), "us8k": (400, 32, 30, 24, 80),
                "speechcommands": (100, 128, 75, 0, 0), "fsc": (400, 32, 75, 0, 0)}
    for name, (frames, batch, epochs, freq, time) in expected.items():
        c = load_config(name)
        assert (c.data.max_length, c.training.batch_size, c.training.epochs) == (frames, batch, epochs)
        assert (c.data.spec_augment.freq_mask, c.data.spec_augment.time_mask) == (freq, time)
        assert c.training.betas == (0.9, 0.98) and c.training.eps == 1e-6 and c.training.weight_decay == 0.1
        assert c.model.checkpoint == "MIT/ast-finetuned-audioset-10-10-0.4593"
        assert (c.method.experts, c.method.slots, c.method.reduction_rate) == (7, 1, 128)
        assert c.training.learning_rate("soft") == 5e-3 and c.training.learning_rate("full") == 5e-5
        assert c.training.learning_rate("linear") == 1e-3


def test_flags_override_and_switching_method_starts_from_its_defaults():
    config = load_config("fsdd-cpu", {"method.experts": 8, "training.epochs": 2, "data.fold": None})
    assert (config.method.name, config.method.experts, config.training.epochs) == ("soft", 8, 2)
    adapter = load_config("fsdd-cpu", {"method.name": "adapter", "method.reduction_rate": 16})
    assert adapter.method.name == "adapter" and adapter.method.reduction_rate == 16
    assert adapter.model.random.dim == 192  # the rest of the preset stays


BAD = [
    ({"data": {"dataset": "x"}, "training": {"epocs": 3}},
     "p.yaml: training.epocs = 3: unknown key for training; allowed: epochs, batch_size"),
    ({"data": {"dataset": "x"}, "method": {"name": "bogus"}},
     "p.yaml: method.name = 'bogus': unknown method; allowed: linear, full, adapter, dense, soft, lora"),
    ({"data": {"dataset": "x"}, "method": {"name": "soft", "expert": 4}},
     "p.yaml: method.expert = 4: unknown key for method 'soft'; allowed: location, adapter_config, init, name, "
     "experts, slots, reduction_rate, normalize"),
    ({"data": {"dataset": "x"}, "training": {"precision": "fp8"}},
     "p.yaml: training.precision = 'fp8': input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
    ({"data": {"dataset": "x"}, "method": {"name": "soft", "slots": 0}},
     "p.yaml: method.slots = 0: input should be greater than or equal to 1"),
    ({"model": {}}, "p.yaml: data: required, not given"),
]


@pytest.mark.parametrize("preset, message", BAD)
def test_bad_presets_name_the_key_the_value_and_what_is_allowed(preset, message):
    with pytest.raises(ConfigError) as error:
        build_config(preset, source="p.yaml")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_yaml_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  dataset: fsdd\ntraining: [epochs: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="a preset is a mapping with sections data, model, method, training"):
        load_config(listed)
    with pytest.raises(ConfigError, match="preset 'nope' not found: give a YAML file or one of: esc50, fsc"):
        load_config("nope")


def _cli(*args):
    return run("finetune", *args)


def test_print_config_shows_the_effective_config():
    result = _cli("--preset", "fsdd-cpu", "--method", "dense", "--experts", "3", "--epochs", "2", "--print-config")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    # The preset's embedded backbone is 128 wide: an unset rate keeps 8 hidden units (the paper's 128 would keep 1).
    assert printed["method"] == {"name": "dense", "location": "mhsa", "adapter_config": "pfeiffer",
                                 "init": "zero_up", "experts": 3, "reduction_rate": 16.0}
    assert "method.reduction_rate 16 (8 hidden units per expert): the paper's 128 would leave 1" in result.stderr
    assert list(printed["method"])[0] == "name"
    assert printed["method"]["experts"] == 3 and printed["training"]["epochs"] == 2
    assert printed["data"]["dataset"] == "fsdd" and printed["model"]["checkpoint"] == "embedded"


@pytest.mark.parametrize("args, message", [
    (["--preset", "fsdd-cpu", "--method", "adapter", "--experts", "8"],
     "--experts 8: unknown key for method 'adapter'; allowed: location, adapter_config, init, name, kind"),
    (["--preset", "fsdd-cpu", "--method", "moe"], "--method moe: unknown method; allowed: linear, full, adapter"),
    (["--preset", "fsdd-cpu", "--precision", "fp8"], "--precision fp8: input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
    (["--preset", "fsdd-cpu", "--fold", "two"], "--fold two: input should be a valid integer"),
    (["--preset", "fsdd-cpu", "--location", "both"], "--location both: input should be 'mhsa' or 'ffn'"),
    (["--preset", "fsdd-cpu", "--epochs", "0"], "--epochs 0: input should be greater than or equal to 1"),
    (["--resume", "runs/x", "--epochs", "3"], "--resume takes the config saved in runs/x/config.yaml; drop --epochs"),
])
def test_bad_flags_fail_with_one_line(args, message):
    result = _cli(*args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: " + message), result.stderr


def test_the_default_preset_is_named_after_the_data_set():
    from softmoa_cli.config import default_preset

    assert default_preset("fsc").name == "fsc.yaml" and default_preset("fsdd").name == "fsdd-cpu.yaml"
    assert default_preset("my-folder") is None


def test_presets_are_found_in_the_source_tree_or_where_a_wheel_installs_them(tmp_path, monkeypatch):
    import sys

    from softmoa_cli.config import presets as load

    assert load._presets_dir() == load.PRESETS_DIR and (load.PRESETS_DIR / "synth.yaml").is_file()
    monkeypatch.setattr(load, "__file__", str(tmp_path / "site-packages" / "softmoa_cli" / "config" / "load.py"))
    assert load._presets_dir() == Path(sys.prefix) / "share" / "softmoa" / "presets"
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"share/softmoa/presets" = ["presets/*.yaml"]' in pyproject
