"""Downloading a file over HTTP: streamed to ``<file>.part``, resumed with a range request,
SHA-256 checked when known.

Progress: ``progress(phase, done, total)`` with phase 'download', 'extract' or 'copy' (the
archives and installs report through the same callback), byte counts, ``total`` None when
unknown.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from ..errors import SoftmoaError

Progress = Callable[[str, int, "int | None"], None]
BLOCK = 1 << 20  # bytes read and written at a time
TIMEOUT_S = 30


def no_progress(phase: str, done: int, total: int | None) -> None:
    """The ``Progress`` that reports nothing."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, sha256: str | None = None, progress: Progress = no_progress) -> Path:
    """Stream ``url`` to ``destination``, resuming ``destination.part`` left by an earlier try.

    The file appears under its final name only when complete (and its SHA-256 matches).
    """
    part = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not destination.exists():
        _stream(url, part, progress)
        os.replace(part, destination)
    if sha256 is not None and (actual := sha256_of(destination)) != sha256:
        destination.unlink()
        raise SoftmoaError(f"{destination.name}: SHA-256 {actual} differs from the expected {sha256}; the file was "
                           "deleted, run again to download it afresh")
    return destination


def _stream(url: str, part: Path, progress: Progress) -> None:
    """Append the rest of ``url`` to ``part`` (an HTTP range request when it has bytes already)."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "softmoa", **({"Range": f"bytes={start}-"} if start else {})}
    done, total = start, None
    try:
        with urlopen(Request(url, headers=headers), timeout=TIMEOUT_S) as response:
            if start and response.status != 206:  # the server ignored the range: start over
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            with open(part, "ab" if done else "wb") as handle:
                while block := response.read(BLOCK):
                    handle.write(block)
                    done += len(block)
                    progress("download", done, total)
    except HTTPError as error:
        if error.code == 416:  # nothing left to send: the part is complete
            return
        raise SoftmoaError(f"cannot download {url}: HTTP {error.code} {error.reason}; try again later "
                           "or install a copy with `source` PATH") from None
    except (URLError, OSError, HTTPException) as error:
        reason = getattr(error, "reason", None) or error or type(error).__name__
        if done > start:
            raise SoftmoaError(f"{url}: the download broke off after {done:,} bytes ({reason}); "
                               "run the same command again to resume") from None
        raise SoftmoaError(f"cannot download {url} ({reason}); no network? Fetch the archive on another "
                           "machine and install it with `source` PATH") from None
    if total is not None and done != total:
        raise SoftmoaError(f"{url}: the download stopped at {done:,} of {total:,} bytes; "
                           "run the same command again to resume")
