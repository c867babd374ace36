"""Assembles the ``softmoa`` Typer app from the registered commands."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import typer

from .plugins import load_commands

HELP = ("Fine-tune Audio Spectrogram Transformers with Soft Mixtures of Adapters "
        "and the baselines they must beat.")


def clean_errors(function: Callable) -> Callable:
    """A SoftmoaError becomes one line on stderr and exit code 2 (``SOFTMOA_DEBUG=1``:
    the traceback instead); other exceptions are bugs and keep theirs."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..engine.errors import SoftmoaError
        from .console import fail

        try:
            return function(*args, **kwargs)
        except SoftmoaError as error:
            if os.environ.get("SOFTMOA_DEBUG"):
                raise
            fail(str(error))
            raise typer.Exit(2) from None

    return wrapper


def short_help(function: Callable) -> str | None:
    """The first paragraph of a command's docstring on one line (for the command list)."""
    paragraph = (function.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split()) or None


def build_app() -> typer.Typer:
    app = typer.Typer(name="softmoa", help=HELP, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False, rich_markup_mode="rich")
    app.callback()(lambda: None)  # always a group of subcommands, even with one registered
    for name, function in sorted(load_commands().items()):
        app.command(name=name, short_help=short_help(function))(clean_errors(function))
    return app


def main() -> None:
    """Console entry point."""
    build_app()(prog_name="softmoa")
