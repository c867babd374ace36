"""Publishing an export whole or not at all: written in a staging folder beside the target,
renamed into place when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SoftmoaError


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A new, empty folder beside ``out`` to write into; renamed to ``out`` when the block
    finishes, removed when it raises. ``out`` must not exist, or be an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SoftmoaError(f"{out}: already exists and is not an empty folder; choose another `out` or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the export is an ordinary folder
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
