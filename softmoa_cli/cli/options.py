"""Shared option definitions (``Annotated`` aliases) for the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Device = Annotated[str, typer.Option(help="auto (cuda if present), cpu, cuda, cuda:1, ...")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
Checkpoint = Annotated[str | None, typer.Option(
    "--checkpoint", "-c", help="Backbone: an AST checkpoint folder or .pth, a hub id such as "
                               "MIT/ast-finetuned-audioset-10-10-0.4593, a run folder of a full fine-tune, "
                               "'embedded' (the tool's own pretrained AST) or 'random' (the preset's random AST). "
                               "Default: the AudioSet AST if cached, else embedded.")]
RunDir = Annotated[Path | None, typer.Argument(help="A run folder (default: the most recent finished run under "
                                                    "runs/).", show_default=False)]
Home = Annotated[Path | None, typer.Option(
    "--home", envvar="SOFTMOA_HOME", help="Data sets and feature caches live here (default ~/.softmoa).",
    show_default=False)]
