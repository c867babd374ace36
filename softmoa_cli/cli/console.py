"""Rich consoles: results on stdout, messages and progress on stderr."""

from rich.console import Console
from rich.markup import escape

out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one error line on stderr."""
    err.print("[bold red]error:[/] " + escape(message), highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """Print one informational line on stderr."""
    err.print("[dim]" + escape(message) + "[/]", highlight=False, soft_wrap=True)
