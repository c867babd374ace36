"""``softmoa embed``: one embedding per audio file, saved as an npz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..options import AudioFiles, Classifier, Device, Runs


Out = Annotated[Path, typer.Option("--out", "-o", metavar="FILE", show_default=False,
                                   help="The npz to write (replaced atomically).")]
Run = Annotated[Path | None, typer.Option(metavar="RUN", help="A finetune run folder or a pushed run's hub id "
                                                             "(owner/name): its best model, PETL modules "
                                                             "included.")]
PerWindow = Annotated[bool, typer.Option(
    "--per-window", metavar="", help="Also save each window's embedding with its file and its start and end in "
                                     "seconds.")]
Layer = Annotated[int | None, typer.Option(
    min=1, metavar="K", help="Pool the output of block K (1 to the model's depth) instead of the head's input "
                             "(no final LayerNorm).", show_default=False)]
BatchSize = Annotated[int, typer.Option(min=1, metavar="N", help="Windows per forward pass.")]


def embed(
    audio: AudioFiles,
    out: Out,
    checkpoint: Classifier = None,
    run: Run = None,
    runs: Runs = None,
    per_window: PerWindow = False,
    layer: Layer = None,
    batch_size: BatchSize = 32,
    device: Device = "cpu",
) -> None:
    """Save one embedding per audio file: the pooled tokens the classifier head sees (the mean
    of all tokens for a finetune run, its PETL modules included; of the CLS and DIST tokens for
    an AudioSet checkpoint), before the head's norm and Linear. A long file is cut into windows
    as predict cuts it and its embedding is the mean of its windows' vectors. Without
    --checkpoint or --run, the most recent finished run is used.

    The npz holds embeddings (files x d, float32) and files (the paths); --per-window adds
    window_embeddings (windows x d), window_file (row in files), window_start and window_end
    (seconds). The same audio always gives the same row.

    AUDIO: audio files or folders (every WAV, FLAC, OGG, MP3, AIFF file under a folder, sorted).
    A file that cannot be embedded is named with the reason, the others are saved, and the exit
    code is 1.

    Examples:
      softmoa embed clips/ --run runs/esc50-soft --out clips.npz
      softmoa embed long.wav -c MODEL_DIR --per-window -o long.npz
      softmoa embed clips/ --layer 6 -o layer6.npz
    """
    from ...engine.errors import SoftmoaError

    if checkpoint is not None and run is not None:  # before torch loads
        raise SoftmoaError("give --checkpoint or --run, not both")

    from ..console import err, fail, line, note
    from ...engine.embed import audio_files, embedder_for, save_embeddings

    files = audio_files(audio)
    embedder, description = embedder_for(checkpoint=checkpoint, run=run, runs_root=runs, device=device,
                                         batch_size=batch_size, layer=layer)
    note(f"model: {description}")
    results = []
    with err.status("embedding…"):
        for result in embedder.embed_files(files):
            if result.error:
                fail(f"{result.file}: {result.error}")
                if os.environ.get("SOFTMOA_DEBUG") and result.exception is not None:
                    import traceback

                    err.print("".join(traceback.format_exception(result.exception)).rstrip(), markup=False,
                              highlight=False, soft_wrap=True)
            results.append(result)
    good = [r for r in results if not r.error]
    if not good:
        fail(f"no file could be embedded; {out} not written")
        raise typer.Exit(1)
    save_embeddings(out, results, embedder.dim, per_window)
    windows = f", {sum(len(r.windows) for r in good)} windows" if per_window else ""
    line(f"embedded {len(good)} of {len(results)} files (d = {embedder.dim}{windows}) -> {out}")
    if len(good) < len(results):
        raise typer.Exit(1)
