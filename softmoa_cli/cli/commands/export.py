"""``softmoa export``: a run's model as an ONNX graph or a standalone softmoa model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import RunDir, Runs, chosen_run

Format = Annotated[str, typer.Option(
    "--format", "-f", metavar="FORMAT", help="onnx: one ONNX graph from features to logits, with model.json "
                                             "(features, labels, task, window rule); standalone: a softmoa model "
                                             "folder for predict --checkpoint and load_pretrained.")]
Out = Annotated[Path, typer.Option("--out", "-o", metavar="DIR", show_default=False,
                                   help="The folder to create (absent or empty); it appears only when complete.")]
Fold = Annotated[int | None, typer.Option(min=1, metavar="K", show_default=False,
                                          help="The fold of a k-fold run to export (default: its first, as predict).")]


def export(
    out: Out,
    run_dir: RunDir = None,
    export_format: Format = "onnx",
    fold: Fold = None,
    runs: Runs = None,
) -> None:
    """Export a run's model for use outside softmoa: the whole classifier (backbone, PETL modules, head; LoRA merged
    into its weights) as an ONNX graph or a standalone model folder with the backbone inside.

    Before the folder appears, the export's logits are checked against the run's own model on batches of 1 and 4
    windows (at most 1e-4 apart; onnx: under onnxruntime); a failed check leaves nothing behind. The ONNX graph
    takes features (batch x frames x mel bins, the batch dynamic) and gives logits; model.json beside it says how
    to compute an audio file's features and scores (see the README's "Export").

    RUN: a run folder; without it, the most recent finished run under runs/.

    Examples:
      softmoa export runs/fsdd-soft-20261128-120000 --out fsdd-soft-onnx
      softmoa export runs/esc50-lora-20261128 --fold 3 -f standalone -o lora
      softmoa predict clip.wav --checkpoint lora
    """
    from ...engine.export import check_format, export_run
    from ..console import Column, err, line, show_table

    check_format(export_format)  # before a run is chosen or torch loads
    run_dir = chosen_run(run_dir)
    with err.status(f"exporting {run_dir} ({export_format})…"):
        result = export_run(run_dir, export_format, out, fold)
    show_table([Column("file", "left", whole=True), Column("bytes")],
               [[name, f"{size:,}"] for name, size in result.files])
    source = result.run if result.fold == "." else result.run / result.fold
    merged = f" ({result.merged} LoRA pairs merged)" if result.merged else ""
    line(f"{result.method} model of {source}{merged} -> {result.folder}")
    line(f"checked against the run's model: largest |logit difference| {result.difference:.1e} "
         f"(allowed {result.tolerance:.0e})")
