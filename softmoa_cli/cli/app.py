"""Assembles the ``softmoa`` Typer app from the registered commands."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated

import typer
import typer.core

from .. import __version__
from .method_options import PARAMETER, with_method_options
from .plugins import load_commands

HELP = ("Fine-tune Audio Spectrogram Transformers with Soft Mixtures of Adapters "
        "and the baselines they must beat.")


def _show_help(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(ctx.get_help(), color=ctx.color)
        raise typer.Exit()


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"softmoa {__version__}")
        raise typer.Exit()


# Typer's own --help shows a type (<bool>) beside it; this one is a plain flag. Every command
# gets it (see with_help_flag), the app too.
HelpFlag = Annotated[bool, typer.Option("--help", metavar="", is_eager=True, expose_value=False, callback=_show_help,
                                        help="Show this message and exit.")]
VersionFlag = Annotated[bool, typer.Option("--version", metavar="", is_eager=True, expose_value=False,
                                           callback=_show_version, help="Print the version and exit.")]
HELP_PARAMETER = "show_help_"


def command_flags(function: Callable) -> dict[str, str]:
    """How a command's settings are given on its command line: each parameter's long flag by
    name and, for a command that takes a run config (``--set``), each config key by the flag that
    sets it or else as ``--set KEY=VALUE``: what the engine's ```name``` marks render to."""
    from ..engine.config import setting_keys
    from .options import config_key

    flags = {}
    for name, parameter in inspect.signature(function, eval_str=True).parameters.items():
        info = next((meta for meta in getattr(parameter.annotation, "__metadata__", ())
                     if type(meta).__name__ == "OptionInfo"), None)
        if info is not None:
            declared = [d for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("--")]
            flags[name] = (declared[0] if declared else f"--{name.replace('_', '-')}").split("/")[0]
    if "set_" not in flags:
        return flags
    keys = {config_key(name): flag for name, flag in flags.items()}
    return flags | {key: keys.get(key, f"--set {key}=VALUE") for key in setting_keys()}


def clean_errors(function: Callable) -> Callable:
    """A SoftmoaError becomes one line on stderr and exit code 2 (``SOFTMOA_DEBUG=1``:
    the traceback instead); other exceptions are bugs and keep theirs. The engine's settings in
    its messages are said as this command's flags (``console.render``)."""
    flags = command_flags(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..engine.errors import SoftmoaError
        from .console import fail, use_flags

        use_flags(flags)
        try:
            return function(*args, **kwargs)
        except SoftmoaError as error:
            if os.environ.get("SOFTMOA_DEBUG"):
                raise
            fail(str(error))
            raise typer.Exit(2) from None

    return wrapper


def with_help_flag(function: Callable) -> Callable:
    """``function`` with one more parameter for Typer to read, the ``--help`` flag (HelpFlag);
    the call drops it."""
    signature = inspect.signature(function, eval_str=True)
    flag = inspect.Parameter(HELP_PARAMETER, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=HelpFlag)
    parameters = list(signature.parameters.values())
    at = next((i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD), len(parameters))
    parameters.insert(at, flag)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        kwargs.pop(HELP_PARAMETER, None)
        return function(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}  # evaluated, as Typer reads them
    return wrapper


def short_help(function: Callable) -> str | None:
    """The first paragraph of a command's docstring on one line (for the command list)."""
    paragraph = (function.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split()) or None


def help_text(function: Callable) -> str | None:
    """A command's docstring as its help shows it whole at any width: each paragraph of prose on
    one line (the terminal wraps it), a block whose further lines are indented (``Examples:``)
    line by line as written."""
    doc = inspect.getdoc(function)
    if not doc:
        return None
    paragraphs = []
    for paragraph in doc.split("\n\n"):
        lines = paragraph.splitlines()
        block = any(line.startswith(" ") for line in lines[1:])
        paragraphs.append(paragraph if block else " ".join(line.strip() for line in lines))
        if block and len(paragraphs) == 2:
            # Typer's rich help dedents what follows the first paragraph, measured from its second
            # line on; an empty first line keeps a block's indentation when nothing else follows.
            paragraphs[1] = "\n" + paragraphs[1]
    return "\n\n".join(paragraphs)


SCOPED_ENV = ("SOFTMOA_HOME", "SOFTMOA_RUNS")  # set by --home and --runs for one command only


def _root(ctx: typer.Context, version: VersionFlag = False, show_help: HelpFlag = False) -> None:
    """Runs before each command: forget the advice given, and put back the environment that
    --home and --runs change when the command ends (several commands in one process, as in the
    tests, each see their own)."""
    from .console import start_command

    start_command()
    saved = {key: os.environ.get(key) for key in SCOPED_ENV}

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    ctx.call_on_close(restore)


def _is_usage_error(error: BaseException) -> bool:
    """A command-line parsing error of Typer's (a missing option, a bad value, an unknown flag or
    command), told by its type's name: Typer keeps those types private. Not the request for help
    that a bare ``softmoa`` makes."""
    names = {kind.__name__ for kind in type(error).__mro__}
    return "ClickException" in names and "NoArgsIsHelpError" not in names


def usage_line(error: BaseException) -> str:
    """A usage error on one line: its message, lower-cased and unwrapped, and where to look."""
    message = " ".join(error.format_message().split()).rstrip(".").replace(". Did you mean", "; did you mean")
    context = getattr(error, "ctx", None)
    where = f" (see {context.command_path} --help)" if context is not None else ""
    return f"{message[:1].lower()}{message[1:]}{where}"


class OneLineErrors(typer.core.TyperGroup):
    """The app's group: a usage error of any command (the group's own or a subcommand's) is one
    line on stderr and exit code 2, as every other error of the tool, instead of Typer's box."""

    def make_context(self, *args, **kwargs):
        with self._one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with self._one_line():
            return super().invoke(ctx)

    @staticmethod
    @contextlib.contextmanager
    def _one_line():
        try:
            yield
        except Exception as error:
            if not _is_usage_error(error):
                raise
            from .console import fail

            fail(usage_line(error))
            raise typer.Exit(2) from None


def build_app() -> typer.Typer:
    app = typer.Typer(name="softmoa", help=HELP, no_args_is_help=True, add_completion=False, add_help_option=False,
                      pretty_exceptions_enable=False, rich_markup_mode="rich", cls=OneLineErrors)
    app.callback()(_root)  # always a group of subcommands, even with one registered
    for name, function in sorted(load_commands().items()):
        if PARAMETER in inspect.signature(function).parameters:
            function = with_method_options(function)
        app.command(name=name, short_help=short_help(function), help=help_text(function),
                    add_help_option=False)(with_help_flag(clean_errors(function)))
    return app


def main() -> None:
    """Console entry point."""
    build_app()(prog_name="softmoa")
