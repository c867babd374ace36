"""``softmoa push``: share a finished run on the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# Arguments are described in the command's help (Typer would show a Python type beside them).
Run = Annotated[Path, typer.Argument(metavar="RUN", hidden=True, show_default=False)]
RepoId = Annotated[str, typer.Argument(metavar="REPO_ID", hidden=True, show_default=False)]
Private = Annotated[bool, typer.Option("--private", metavar="", help="Create the repo private (a repo that exists "
                                                                    "keeps its visibility).")]
DryRun = Annotated[Path | None, typer.Option("--dry-run", metavar="DIR", show_default=False,
                                             help="Write what would be uploaded into DIR (new or empty) and upload "
                                                  "nothing.")]


def push(run: Run, repo_id: RepoId, private: Private = False, dry_run: DryRun = None) -> None:
    """Upload a finished run to the Hugging Face Hub: each fold's adapter (adapter.safetensors,
    adapter.json), config.yaml, run.json, metrics.json, log.csv, a random backbone kept in the
    run folder, and a model card (README.md) written for REPO_ID. Resume state never travels.

    RUN: a finished run folder. REPO_ID: the hub repo, owner/name (created if it does not exist;
    log in first with `hf auth login` or set HF_TOKEN). Others then use the run by its hub id
    wherever a run is taken: predict --run, evaluate, analyze, embed --run, --checkpoint.

    Examples:
      softmoa push runs/fsdd-soft-20261128-120000 me/fsdd-soft
      softmoa push runs/fsdd-soft-20261128-120000 me/fsdd-soft --private
      softmoa push runs/fsdd-soft-20261128-120000 me/fsdd-soft --dry-run out/
    """
    from ...engine.errors import SoftmoaError
    from ...engine.hub import is_hub_id

    if not is_hub_id(repo_id):  # before torch loads
        raise SoftmoaError(f"{repo_id}: not a hub repo id; give one as owner/name, e.g. your-name/fsdd-soft")

    from ...engine.runs.sharing import push_run, stage_run
    from ..console import err, line, note

    if dry_run is not None:
        files = stage_run(run, dry_run, repo_id, message=note)
        line(f"wrote {len(files)} files to {dry_run} (nothing uploaded): {', '.join(files)}")
        return
    with err.status(f"pushing to {repo_id}…"):
        url, files = push_run(run, repo_id, private, message=note)
    line(f"pushed {len(files)} files to {url}")
    line(f"use it as: softmoa predict AUDIO --run {repo_id}")
