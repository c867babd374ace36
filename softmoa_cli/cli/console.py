"""Rich consoles: results on stdout, messages and progress on stderr; tables that never cut a cell."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


class _Console(Console):
    """A rich Console whose width (COLUMNS, else the terminal's, else 80) is read at each print
    rather than once at import, so each in-process invocation (tests, CliRunner) gets its own."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._width = self._height = None  # rich freezes COLUMNS/LINES here; size re-reads them


out = _Console()
err = _Console(stderr=True)


BACKTICKED = re.compile(r"`([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)`")
_flags: dict[str, str] = {}  # the current command's: a parameter name or config key -> how to give it


def render(message: str) -> str:
    """The engine's words for the command line: a setting it names in backticks (a parameter,
    ```dataset```, or a config key, ```data.max_length```) as this command's flag for it
    (``--dataset``, ``--max-length``, or ``--set data.max_length=VALUE``); one this command does not
    take, as it is."""
    return BACKTICKED.sub(lambda found: _flags.get(found.group(1), found.group(1)), message)


def fail(message: str) -> None:
    """Print one error line on stderr."""
    err.print("[bold red]error:[/] " + escape(render(message)), highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """Print one informational line on stderr."""
    err.print("[dim]" + escape(render(message)) + "[/]", highlight=False, soft_wrap=True)


def use_flags(flags: dict[str, str]) -> None:
    """The settings the running command takes, as ``render`` gives them (``app.clean_errors``)."""
    _flags.clear()
    _flags.update(flags)


_advised: set[str] = set()  # the advice given during this command (``start_command`` empties it)


def advise(message: str) -> None:
    """Print a line of advice on stderr once per command, however often the engine gives it (an
    ablation trains many runs, the offline default two)."""
    if message not in _advised:
        _advised.add(message)
        note(message)


def start_command() -> None:
    """Forget the advice given: a new command (the CLI calls this as each command starts, so that
    several commands in one process, as in tests, each say theirs)."""
    _advised.clear()


def line(text: str, console: Console | None = None) -> None:
    """Print ``text`` as one plain line (no markup, no highlighting) that is never wrapped or cut:
    paths and commands stay whole, to be copied."""
    (console or out).print(Text(text), soft_wrap=True, highlight=False)


@dataclass(frozen=True)
class Column:
    """A table column. A ``whole`` column (names, paths, values such as ``43.33 ± 1.96``) is as
    wide as its longest cell, so its cells are never wrapped or cut; other cells may wrap at
    spaces. ``optional`` columns leave first when the table does not fit; their values then
    follow it, one line per row."""

    header: str
    justify: str = "right"
    whole: bool = False
    optional: bool = False


def show_table(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str | None = None,
               console: Console | None = None) -> None:
    """Print rows of plain strings (no markup) at the console's width without cutting a cell:
    the whole table when it fits; else without its optional columns, whose values follow it as
    ``FIRST-CELL · header: value`` lines; else stacked, each row as ``header: value`` of its first
    cell on a line and its other cells as ``header: value`` pairs on indented lines below."""
    console = console or out
    rows = [[str(cell) for cell in row] for row in rows]
    width = console.width
    everything = list(range(len(columns)))
    required = [i for i in everything if not columns[i].optional]
    for shown in (everything, required):
        widths = _fit([columns[i] for i in shown], [[row[i] for i in shown] for row in rows], width)
        if widths is not None:
            table = Table(title=title, show_edge=False)
            for i, column_width in zip(shown, widths):
                table.add_column(Text(columns[i].header), justify=columns[i].justify, width=column_width,
                                 overflow="fold")
            for row in rows:
                table.add_row(*(Text(row[i]) for i in shown))
            console.print(table)
            left_out = [i for i in everything if i not in shown]
            for row in rows if left_out else []:
                line(" · ".join([row[0]] + [f"{columns[i].header}: {row[i]}" for i in left_out]), console)
            return
    _stacked(columns, rows, title, console, width)


def _fit(columns: list[Column], rows: list[list[str]], width: int) -> list[int] | None:
    """Column widths (without padding) that fit ``width``: each column as wide as its widest cell,
    then the columns with the most room narrowed, one at a time, down to their longest word (a
    whole column: its widest cell); None when even that is too wide. Headers count as cells."""
    def words(text: str) -> list[int]:
        return [cell_len(word) for word in text.split()] or [0]

    natural, least = [], []
    for k, column in enumerate(columns):
        cells = [row[k] for row in rows]
        longest = max([cell_len(cell) for cell in cells] + [cell_len(column.header)])
        word = max(max(words(cell)) for cell in cells + [column.header])
        cell = max([cell_len(cell) for cell in cells] or [0])
        natural.append(max(longest, 1))
        least.append(max(cell, word, 1) if column.whole else max(word, 1))
    overhead = 3 * len(columns) - 1  # one space each side of every cell, a rule between columns
    if sum(least) + overhead > width:
        return None
    widths = list(natural)
    while (excess := sum(widths) + overhead - width) > 0:  # narrow as few columns as possible
        k = max(range(len(widths)), key=lambda k: widths[k] - least[k])
        widths[k] = max(least[k], widths[k] - excess)
    return widths


def _stacked(columns: Sequence[Column], rows: list[list[str]], title: str | None, console: Console,
             width: int) -> None:
    """Each row as ``header: value`` of its first cell, then its other cells as ``header: value``
    pairs packed into indented lines."""
    if title:
        line(title, console)
    for row in rows:
        line(f"{columns[0].header}: {row[0]}", console)
        pairs = [f"{column.header}: {cell}" for column, cell in zip(columns[1:], row[1:])]
        current = ""
        for pair in pairs:
            if current and cell_len(current) + 3 + cell_len(pair) > width - 2:
                line("  " + current, console)
                current = pair
            else:
                current = f"{current} · {pair}" if current else pair
        if current:
            line("  " + current, console)
