"""Help that helps and commands that behave alike: help without
Python types, with a description for every option and defaults shown whole and docstrings
unbroken at any width; ``--version``; "did you mean"; analyze like evaluate; ``--resume`` on a
finished or missing run; flag and preset errors before torch loads; predict's tracebacks on
request; bench's class count and its one-repeat warning."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from helpers import toy_config, toy_table, write_wav
from softmoa_cli import __version__
from softmoa_cli.cli.app import build_app
from softmoa_cli.cli.plugins import load_commands

COMMANDS = sorted(load_commands())
PYTHON_TYPES = re.compile(r"<(bool|str|int|float|path|file|dir|int range|float range)>|list\[")


def invoke(*args, columns: int = 80, env: dict | None = None):
    return CliRunner().invoke(build_app(), [str(a) for a in args], env={"COLUMNS": str(columns), **(env or {})})


def flat(text: str) -> str:
    """The words of rendered help in order, without the panels' borders."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def docstring_paragraphs(name: str) -> list[list[str]]:
    """A command's docstring as paragraphs of lines."""
    return [paragraph.splitlines() for paragraph in inspect.getdoc(load_commands()[name]).split("\n\n")]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_python_type_and_every_option_and_default_whole(command):
    args = [command, "--help"] if command else ["--help"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert not PYTHON_TYPES.search(result.stdout), result.stdout
    assert "…" not in result.stdout, result.stdout  # nothing cut
    group = typer.main.get_command(build_app())
    target = group.commands[command] if command else group
    shown = flat(result.stdout)
    options = [p for p in target.get_params(group.make_context("softmoa", [], resilient_parsing=True))
               if not p.hidden and p.opts[0].startswith("-")]
    assert options
    for option in options:
        assert option.help, f"{command} {option.opts[0]} has no description"
        assert flat(option.help) in shown, f"{command} {option.opts[0]}: help not shown whole"


def wrapped_only_when_full(text: str, lines: list[str], width: int) -> bool:
    """Whether ``text`` is shown as consecutive ``lines``, each but the last broken only where the
    next word would not fit in ``width``."""
    for start, line in enumerate(lines):
        if not line or not text.startswith(line):
            continue
        shown, end = line, start
        while len(shown) < len(text) and end + 1 < len(lines):
            next_line = lines[end + 1]
            if len(lines[end]) + 1 + len(next_line.split(" ")[0]) <= width:
                break  # broken before the line was full
            end += 1
            shown += " " + next_line
        if shown == text:
            return True
    return False


@pytest.mark.parametrize("command", COMMANDS)
def test_docstrings_are_never_broken_mid_sentence_and_examples_keep_their_lines(command):
    wide = invoke(command, "--help", columns=200).stdout.splitlines()
    narrow = invoke(command, "--help", columns=80).stdout.splitlines()
    for lines in docstring_paragraphs(command):
        if any(line.startswith(" ") for line in lines[1:]):  # a block (Examples:): line by line, indented
            for line in lines:
                assert any(shown.rstrip() == " " + line for shown in narrow), (line, narrow)
        else:  # prose: one line when the terminal is wide enough
            text = " ".join(line.strip() for line in lines)
            assert wrapped_only_when_full(text, [line.strip() for line in wide], 200 - 2), (text, wide)


def test_version_prints_the_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"softmoa {__version__}\n"


@pytest.mark.parametrize("args, hint", [
    (["finetune", "--method", "sofy", "--print-config"], "did you mean 'soft'?"),
    (["prepare", "synht"], "did you mean 'synth'?"),
    (["ablate", "slotz"], "did you mean 'slots'?"),
    (["bench", "--methods", "adaptr"], "did you mean 'adapter'?"),
])
def test_a_mistyped_name_gets_a_suggestion(args, hint, tmp_path):
    result = invoke(*args, *(["--out", tmp_path] if args[0] == "ablate" else []))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and hint in lines[0] and "(" in lines[0], result.stderr


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A finished Soft-MoA run of one epoch on the toy table, in <tmp>/runs/."""
    from softmoa_cli.engine.train import finetune

    base = tmp_path_factory.mktemp("toy")
    run, _ = finetune(toy_config("soft", epochs=1), base / "runs" / "toy-soft", table=toy_table())
    return run


def test_analyze_takes_the_latest_run_and_prints_json(toy_run, monkeypatch):
    from softmoa_cli.engine.data import cache_open

    monkeypatch.chdir(toy_run.parent.parent)
    monkeypatch.setattr(cache_open, "open_dataset", lambda data, message, front_end=None: toy_table())
    result = invoke("analyze", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "soft" and report["split"] == "test" and len(report["layers"]) == 2
    assert report["run"].endswith("toy-soft") and report["experts_png"].endswith("experts.png")


def test_resume_says_a_run_is_finished_or_missing(toy_run, tmp_path):
    finished = invoke("finetune", "--resume", toy_run)
    assert finished.exit_code == 2, finished.output
    assert "this run is finished (1 epoch); to train longer, start a new run with --epochs 2" in finished.stderr
    assert "--resume continues interrupted runs only" in finished.stderr
    missing = invoke("finetune", "--resume", tmp_path / "no-such-run")
    assert missing.exit_code == 2 and "no-such-run: no such run folder" in missing.stderr, missing.output


@pytest.mark.parametrize("args, message", [
    (["finetune", "--method", "sofy"], "did you mean 'soft'?"),
    (["finetune", "--preset", "no-such-preset"], "preset 'no-such-preset' not found"),
    (["finetune", "--preset", "fsdd-cpu", "--epochs", "0"], "--epochs 0"),
    (["finetune", "--resume", "no-such-run"], "no such run folder"),
    (["ablate", "slotz"], "did you mean 'slots'?"),
    (["bench", "--methods", "sofy"], "did you mean 'soft'?"),
    (["prepare", "fsdd", "--max-bad", "5x"], "--max-bad 5x"),
    (["prepare", "synht"], "did you mean 'synth'?"),
    (["finetune", "--dataset", "synht"], "did you mean 'synth'?"),
])
def test_flag_and_preset_errors_come_before_torch_loads(args, message, tmp_path):
    code = ("import sys\nfrom softmoa_cli.cli.app import main\nsys.argv[0] = 'softmoa'\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    print(exit.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert message in done.stderr


def test_version_loads_no_torch():
    code = ("import sys\nfrom softmoa_cli.cli.app import main\nsys.argv[:] = ['softmoa', '--version']\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    print(exit.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["softmoa", __version__, "0", "False"], done.stdout + done.stderr


def test_predict_shows_a_bad_files_traceback_on_request(toy_run, tmp_path):
    good = write_wav(tmp_path / "good.wav", seconds=0.5)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    debug = invoke("predict", good, bad, "--run", toy_run, env={"SOFTMOA_DEBUG": "1"})
    assert debug.exit_code == 1, debug.output
    assert "good.wav" in debug.stdout and "class" in debug.stdout  # the good file is still scored
    assert "bad.wav" in debug.stderr and "Traceback (most recent call last)" in debug.stderr
    plain = invoke("predict", good, bad, "--run", toy_run, env={"SOFTMOA_DEBUG": ""})
    assert plain.exit_code == 1 and "bad.wav" in plain.stderr and "Traceback" not in plain.stderr


TINY = ["--dim", "32", "--depth", "1", "--heads", "2", "--mlp-dim", "64", "--frames", "32", "--batch", "2",
        "--warmup", "0", "--threads", "1", "--methods", "adapter"]


def test_bench_names_the_class_count_and_warns_that_one_repeat_is_noise():
    once = invoke("bench", *TINY, "--repeats", "1", "--classes", "7")
    assert once.exit_code == 0, once.output
    assert "7-class head" in once.stderr
    assert "warning: one timed round" in once.stderr
    twice = invoke("bench", *TINY, "--repeats", "2")
    assert twice.exit_code == 0, twice.output
    assert "10-class head" in twice.stderr and "warning" not in twice.stderr
