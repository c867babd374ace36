"""Every bad flag value is one line: a fuzz over each command's options (read from the Typer app)
and over the run schema's fields (through ``--set``), plus the conflicting flags: each case must
exit with code 2, print exactly one line (``error: ...``) on stderr and nothing on stdout, create
no file or folder, and never import torch. The cases run in one fresh interpreter that has not
imported torch, so an import on any error path shows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FUZZ = textwrap.dedent(r'''
    import json, os, sys, typing, types
    from pathlib import Path

    import typer.main
    from typer.testing import CliRunner
    from pydantic import BaseModel

    from softmoa_cli.cli.app import build_app
    from softmoa_cli.cli.options import config_key
    from softmoa_cli.engine.config import RunConfig
    from softmoa_cli.engine.petl.methods import METHODS

    # What each command needs before its options count (nothing here exists: a flag error comes first).
    BASE = {"predict": ["clip.wav"], "embed": ["clip.wav", "--out", "out.npz"], "evaluate": ["run-x"],
            "analyze": ["run-x"], "export": ["run-x", "--out", "exported"], "push": ["run-x", "me/x"],
            "prepare": ["fsdd"], "ablate": ["slots"]}
    CONFLICTS = [
        ["predict", "clip.wav", "--json", "--csv"], ["predict", "clip.wav", "-c", "m", "--run", "r"],
        ["predict", "clip.wav", "--window", "1"], ["predict", "clip.wav", "--hop", "0.5"],
        ["predict", "clip.wav", "--stream"], ["predict", "-", "--stream", "--csv"],
        ["predict", "-", "--stream", "--timeline"],
        ["embed", "clip.wav", "-o", "out.npz", "-c", "m", "--run", "r"],
        ["finetune", "--balanced-sampling", "--class-weights"], ["finetune", "--resume", "run-x", "--epochs", "3"],
        ["ablate", "slots", "--set", "method.slots=2"], ["ablate", "methods", "--set", "method.name=adapter"],
        ["ablate", "bogus-study"], ["ablate", "slots", "--values", "1,x"], ["push", "run-x", "not a repo"],
        ["finetune", "--set", "no_equals_sign"], ["finetune", "-d", "no/such/manifest.csv"],
        ["finetune", "--method", "sofy"], ["finetune", "--rank", "4"], ["export", "run-x", "-o", "e", "-f", "tflite"],
    ]


    def field_of(key):
        """The pydantic field of a dotted run-config key (``method.X``: of a method that has X)."""
        section, name = key.split(".")
        if section == "method":
            return next(METHODS.get(m).config.model_fields[name] for m in METHODS.names()
                        if name in METHODS.get(m).config.model_fields)
        return dict(leaves(RunConfig))[key]


    def schema_values(field):
        """Bad values of a schema field: below its bound, outside its choices, of the wrong type."""
        values = []
        for rule in field.metadata:
            for name, shift in (("ge", -1), ("gt", 0)):
                bound = getattr(rule, name, None)
                if bound is not None:
                    values.append(str(bound + shift))
        kinds = set(typing.get_args(field.annotation)) | {field.annotation}
        if any(typing.get_origin(k) is typing.Literal for k in kinds) or typing.get_origin(field.annotation) is list:
            values.append("bogus")
        if kinds & {int, float}:
            values.append("x")
        if bool in kinds:
            values.append("maybe")
        return values


    def leaves(model, prefix=""):
        """Every leaf key of the run schema (the method section: the default method's fields)."""
        for name, field in model.model_fields.items():
            inner = next((a for a in (typing.get_args(field.annotation) or (field.annotation,))
                          if isinstance(a, type) and issubclass(a, BaseModel)), None)
            if name == "method":
                inner = type(RunConfig.model_fields["method"].default)
            if inner is not None:
                yield from leaves(inner, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", field


    def option_values(param, command):
        """Bad values of a command-line option: out of its range, not of its type, not a choice,
        refused by its callback."""
        kind, values = param.type_descriptor.annotation, []
        for bound, shift in ((param.min, -1), (param.max, 1)):
            if bound is not None:
                values.append(str(bound + shift))
        if typing.get_origin(kind) is typing.Literal:
            values.append("bogus")
        if kind in (int, float):
            values.append("x")
        if param.callback is not None and kind is not Path:  # a validator (a Path's callback only records it)
            values += ["bogus", "-1"]
        flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
        key = config_key(param.name) if command in ("finetune", "ablate") else None
        if key is not None and key not in ("data.dataset", "model.checkpoint", "method.name"):
            values += schema_values(field_of(key))
        return flag, list(dict.fromkeys(values))


    def cases():
        group = typer.main.get_command(build_app())
        for name, command in sorted(group.commands.items()):
            for param in command.params:
                if param.param_type_name != "option" or param.is_flag or param.name == "show_help_":
                    continue
                flag, values = option_values(param, name)
                for value in values:
                    yield [name, *BASE.get(name, []), flag, value]
        for key, field in leaves(RunConfig):
            for value in schema_values(field):
                yield ["finetune", "--set", f"{key}={value}"]
                yield ["ablate", "experts", "--set", f"{key}={value}"]
        yield from CONFLICTS


    def files(*roots):
        return sorted(str(p) for root in roots for p in Path(root).rglob("*"))


    work, home = Path(sys.argv[1]), Path(os.environ["SOFTMOA_HOME"])
    os.chdir(work)
    app, runner, failures, count = build_app(), CliRunner(), [], 0
    for args in cases():
        count += 1
        before = files(work, home)
        result = runner.invoke(app, args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        problems = [problem for problem, bad in (
            (f"exit code {result.exit_code}", result.exit_code != 2),
            (f"{len(lines)} lines on stderr", len(lines) != 1 or not result.stderr.startswith("error: ")),
            ("stdout not empty", bool(result.stdout.strip())),
            ("files created", files(work, home) != before),
            ("torch imported", "torch" in sys.modules)) if bad]
        if problems:
            failures.append({"args": args, "problems": problems, "stderr": result.stderr[-600:],
                             "exception": repr(result.exception)})
        if "torch" in sys.modules:
            break  # every later case would be blamed for this one
    print(json.dumps({"cases": count, "failures": failures}))
''')


def test_every_bad_flag_value_is_one_line_exit_2_with_nothing_made_and_no_torch(tmp_path):
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    (tmp_path / "work").mkdir()
    env = {"SOFTMOA_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "COLUMNS": "80", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "work")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["cases"] > 150  # the fuzz really covers the commands and the schema
    assert not report["failures"], json.dumps(report["failures"][:8], indent=1)


def test_unreadable_standard_input_is_named_stdin(classifier):
    result = run_with_input(["predict", "-", "-c", classifier], b"hello\n")
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1] == (
        "error: <stdin>: not a readable audio file (Format not recognised.); use WAV, FLAC or OGG")
    assert "BytesIO" not in result.output


def run_with_input(args, data: bytes):
    from typer.testing import CliRunner

    from softmoa_cli.cli.app import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args], input=data)
