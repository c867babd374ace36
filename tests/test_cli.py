"""The app assembles from entry points, stays light, and keeps built-ins ahead of plugins."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

from typer.testing import CliRunner

from softmoa_cli.cli import plugins
from softmoa_cli.cli.app import build_app


def test_help_does_not_import_torch():
    code = ("import sys; from softmoa_cli.cli.app import build_app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(build_app(), ['--help']); assert r.exit_code == 0, r.output; "
            "print('predict' in r.output, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def plugin_command(name: str = "world") -> None:
    """A command from an outside package."""
    print(f"hello {name}")


def fake_entry_points(monkeypatch, extra):
    real = plugins.entry_points

    def patched(group):
        return [*real(group=group), *extra]

    monkeypatch.setattr(plugins, "entry_points", patched)


def test_plugin_commands_are_mounted_and_builtins_win(monkeypatch):
    fake_entry_points(monkeypatch, [
        EntryPoint("hello", f"{__name__}:plugin_command", plugins.GROUP),
        EntryPoint("predict", f"{__name__}:plugin_command", plugins.GROUP),  # collides with a built-in
        EntryPoint("broken", "no_such_module:nothing", plugins.GROUP),
    ])
    app = build_app()
    runner = CliRunner()
    assert runner.invoke(app, ["hello", "--name", "there"]).stdout == "hello there\n"
    assert "classifier checkpoint" in runner.invoke(app, ["predict", "--help"]).stdout  # still the built-in


def test_engine_never_imports_the_cli_or_transformers():
    modules = ["petl.build", "config", "bench", "ablate", "contribution", "evaluate", "predict", "train", "data.cache",
               "data.cache_build", "data.cache_open", "data.lengths", "data.fetch", "data.archives", "data.install"]
    code = ("import sys; " + "; ".join(f"import softmoa_cli.engine.{m}" for m in modules) +
            "; print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'typer', 'rich') "
            "or m.startswith('softmoa_cli.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
