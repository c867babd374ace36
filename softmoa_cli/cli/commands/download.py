"""``softmoa download``: install a data set or the AudioSet AST checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import Home


def download(
    name: Annotated[str | None, typer.Argument(help="esc50, us8k, speechcommands, fsc, fsdd, a registered data set, "
                                                    "or ast-audioset (the checkpoint); omit to list them.",
                                               show_default=False)] = None,
    source: Annotated[Path | None, typer.Option("--from", help="A local archive (.zip, .tar.gz, ...) or an extracted "
                                                               "folder: the offline route.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Install again even if it is already there.")] = False,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the archive.", show_default=False)] = None,
    home: Home = None,
) -> None:
    """Download and install a data set under $SOFTMOA_HOME/data/NAME (default ~/.softmoa).

    Examples:
      softmoa download fsdd
      softmoa download esc50 --from ~/Downloads/ESC-50-master.zip
      softmoa download fsc --from /data/fluent_speech_commands_dataset
      softmoa download ast-audioset
    """
    from ...engine.data.download import CHECKPOINTS, install, install_checkpoint
    from ...engine.data.registry import datasets
    from ..console import out

    if name is None:
        show_datasets(home)
        return
    if name in CHECKPOINTS:
        path = install_checkpoint(name, source, force=force, home=home)
        out.print(f"{name}: ready at {path}; use --checkpoint {path if source else CHECKPOINTS[name]}", highlight=False)
        return
    spec = datasets().get(name)
    with ByteProgress() as progress:
        installed = install(spec, source, force=force, home=home, sha256=sha256, progress=progress)
    if installed.already:
        out.print(f"{name}: already there ({installed.clips:,} clips in {installed.root}); --force installs again",
                  highlight=False)
    else:
        out.print(f"{name}: installed {installed.clips:,} clips in {installed.root}; next: softmoa prepare {name}",
                  highlight=False)


def show_datasets(home: Path | None) -> None:
    from rich.table import Table

    from ...engine.data.paths import data_dir
    from ...engine.data.registry import datasets
    from ..console import out

    table = Table(show_edge=False)
    for column in ("name", "data set", "clips", "max_length", "source", "installed"):
        table.add_column(column)
    for name in datasets():
        spec = datasets().get(name)
        folder = data_dir(name, home)
        present = folder.is_dir() and spec.find_root(folder) is not None
        table.add_row(name, spec.title, f"{spec.clips:,}" if spec.clips else "?", str(spec.max_length),
                      spec.source.url if spec.source else "--from only", "yes" if present else "no")
    out.print(table)


class ByteProgress:
    """Rich progress bars for the engine's ``progress(phase, done, total)`` byte callback."""

    def __enter__(self):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        from ..console import err

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                             TimeRemainingColumn(), console=err, transient=True)
        self.tasks: dict[str, int] = {}
        return self

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if not self.tasks:
            self.bars.start()  # only once there is something to show
        if phase not in self.tasks:
            self.tasks[phase] = self.bars.add_task(phase, total=total)
        self.bars.update(self.tasks[phase], completed=done, total=total)

    def __exit__(self, *exc):
        if self.tasks:
            self.bars.stop()
        return False
