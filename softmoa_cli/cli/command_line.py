"""The command line a user typed, rebuilt from what Typer parsed (for a run's model card): the
command and every argument and option given on the command line, in the command's own order,
each option by its long name. The engine never reads ``sys.argv``; the CLI hands it this."""

from __future__ import annotations

import shlex

import typer


def typed_command(ctx: typer.Context) -> str:
    """``softmoa COMMAND ...`` as typed (defaults left out), quoted for a POSIX shell."""
    words = ["softmoa", ctx.info_name]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name).name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += [str(v) for v in values]
        elif getattr(param, "is_flag", False):
            words.append(_long(param.opts if value else param.secondary_opts))
        else:
            for v in values:
                words += [_long(param.opts), str(v)]
    return shlex.join(words)


def _long(names: list[str]) -> str:
    """An option's long name (``--method`` of ``-m, --method``)."""
    return next((name for name in names if name.startswith("--")), names[0])
