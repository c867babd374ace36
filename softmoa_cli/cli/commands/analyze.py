"""``softmoa analyze``: does every expert of a mixture contribute?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from ..options import Device, Home, Json, RunDataset, RunDir, Runs, chosen_run


def analyze(
    run: RunDir = None,
    split: Annotated[Literal["test", "valid", "train"], typer.Option(
        metavar="SPLIT", help="test, valid or train clips of the run's own split.")] = "test",
    fold: Annotated[int | None, typer.Option(min=1, metavar="K", help="K-fold runs: which fold's model (default: "
                                                                      "the first).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help="Folder for experts.png and "
                                             "experts.json (default: the run folder).")] = None,
    dataset: RunDataset = None,
    home: Home = None,
    runs: Runs = None,
    as_json: Json = False,
    device: Device = "cpu",
) -> None:
    """Expert contributions per layer: the share of Soft-MoA combine-weight mass (or Dense-MoA
    mean router weight) each expert receives, with balance figures and a heatmap.

    RUN: a finished Soft-MoA or Dense-MoA run folder or the hub id of a pushed one (owner/name;
    its files then go to runs/hub/OWNER--NAME/); without it, the most recent finished run under
    runs/.

    Examples:
      softmoa analyze
      softmoa analyze runs/fsdd-soft-20261128-120000 --split test --json
    """
    from ...engine.contribution import analyze_run, plot_contributions
    from ...engine.fsutil import atomic_write_json
    from ...engine.runs.run import Run
    from ..console import Column, note, show_table

    run = chosen_run(run)
    result = analyze_run(run, split, fold, device=device, message=note, dataset=dataset)
    folder = out or Run.open(run).output_folder
    png = plot_contributions(result, folder / "experts.png")
    report = {"kind": result.kind, "split": split, "layers": result.rows()}
    atomic_write_json(folder / "experts.json", report)
    if as_json:
        print(json.dumps(report | {"run": str(run), "experts_png": str(png)}, indent=2))
        return
    experts = result.shares.shape[1]
    # Layer names and every expert's share stay in the table; narrow, the balance figures follow it.
    columns = [Column("layer", "left", whole=True), *(Column(f"e{i}") for i in range(experts)),
               Column("entropy", optional=True), Column("min/max", optional=True)]
    rows = [[row["layer"].replace(".adapter", ""), *(f"{s:.3f}" for s in row["shares"]),
             f"{row['normalized_entropy']:.3f}", f"{row['min_max_ratio']:.3f}"] for row in result.rows()]
    show_table(columns, rows, f"expert shares ({result.kind} mixture, uniform = {1 / experts:.3f})")
    note(f"wrote {png} and {folder / 'experts.json'}")
