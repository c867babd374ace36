"""User-facing errors: each carries one line that says what went wrong, where, and what to do.

The CLI prints ``str(error)`` on one line and exits non-zero; anything else is a bug and
keeps its traceback.
"""


class SoftmoaError(Exception):
    """An error caused by the user's input (a file, a flag, a config), not by the code."""


class AudioError(SoftmoaError):
    """An audio file that cannot be used: missing, unreadable, empty or not finite."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(SoftmoaError):
    """A checkpoint that is missing, of an unknown format, or whose tensors do not fit."""
