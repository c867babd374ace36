"""``softmoa predict``: top-k labels for audio files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ..options import Device, Json


def predict(
    audio: Annotated[list[Path], typer.Argument(metavar="AUDIO", hidden=True, show_default=False)],
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", "-c", metavar="MODEL", help="AST classifier: a directory, an original .pth, or a hub id "
                                                    "such as MIT/ast-finetuned-audioset-10-10-0.4593.")] = None,
    run: Annotated[Path | None, typer.Option(metavar="RUN", help="A finetune run folder: its best model and "
                                                                 "labels.")] = None,
    runs_root: Annotated[Path, typer.Option(metavar="DIR", help="Where to look for the most recent "
                                                                "run.")] = Path("runs"),
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Labels shown per file.")] = 5,
    threshold: Annotated[float | None, typer.Option(
        metavar="X", help="Multi-label models: mark labels scoring at least this (default: the run's thresholds "
                          "tuned on its validation clips; 0.5 for AudioSet checkpoints).", show_default=False)] = None,
    as_json: Json = False,
    device: Device = "cpu",
) -> None:
    """Score audio files with a finetune run or an AST classifier (long files: windows averaged).
    Without --checkpoint or --run, the most recent finished run is used. Multi-label models
    (a multi-label run, an AudioSet checkpoint) give independent sigmoid scores and mark the
    labels at or above their thresholds (✓), listed in full below each table.

    AUDIO: audio files (WAV, FLAC, OGG; any rate and channels). A file that cannot be scored is
    named with the reason (SOFTMOA_DEBUG=1: the traceback too), the others are scored, and the
    exit code is 1.

    Examples:
      softmoa predict clip.wav other.flac --json
      softmoa predict clip.wav -k 3 -c MIT/ast-finetuned-audioset-10-10-0.4593
      softmoa predict clip.wav --threshold 0.3
    """
    from ..console import err, fail, note, out
    from ...engine.predict import predictor_for

    predictor, description = predictor_for(checkpoint=checkpoint, run=run, runs_root=runs_root, device=device,
                                           threshold=threshold)
    note(f"model: {description}")
    results = []
    with err.status("scoring…"):
        for result in predictor.predict_files(audio, top_k):
            if result.error:
                fail(f"{result.file}: {result.error}")
                if os.environ.get("SOFTMOA_DEBUG") and result.exception is not None:
                    show_traceback(result.exception)
            results.append(result)
    good = [r for r in results if not r.error]
    if as_json:
        print(json.dumps([r.to_dict() for r in good], indent=2))
    else:
        for result in good:
            show_prediction(result)
    if len(good) < len(results):
        raise typer.Exit(1)


def show_prediction(result) -> None:
    """One file's name and its top-k table; a multi-label model's labels at or above their
    thresholds marked ✓ in the table and listed below it (some may rank below the top k)."""
    from rich.text import Text

    from ..console import Column, line, out, show_table

    out.print(Text(result.file, style="bold"), soft_wrap=True)
    if result.positive is None:
        show_table([Column("label", "left", whole=True), Column("score")],
                   [[label, f"{score:.4f}"] for label, score in result.predictions])
        return
    marked = {label for label, _ in result.positive}
    show_table([Column("label", "left", whole=True), Column("score"), Column("above threshold", "center")],
               [[label, f"{score:.4f}", "✓" if label in marked else ""] for label, score in result.predictions])
    listed = ", ".join(f"{label} {score:.4f}" for label, score in result.positive)
    line(f"above threshold ({len(result.positive)}): {listed or 'none'}")


def show_traceback(error: BaseException) -> None:
    """The traceback of a file's error on stderr (``SOFTMOA_DEBUG=1``)."""
    import traceback

    from ..console import err

    err.print("".join(traceback.format_exception(error)).rstrip(), markup=False, highlight=False, soft_wrap=True)
