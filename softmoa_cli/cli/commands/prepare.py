"""``softmoa prepare``: compute the feature cache of a data set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..options import Home, MaxLength, MaxSeconds

SHOWN_BAD = 5


def prepare(
    name: Annotated[str, typer.Argument(metavar="NAME", hidden=True, show_default=False)],
    max_length: MaxLength = None,
    max_seconds: MaxSeconds = None,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, metavar="N", help="Processes computing features (default: "
                                             "the CPU cores, at most 8).", show_default=False)] = None,
    max_bad: Annotated[str, typer.Option(metavar="SHARE", help="Largest share of bad clips that still exits 0, as "
                                         "0.05 or 5%; remembered with the cache for finetune and evaluate.")] = "1%",
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="A copy of the data set elsewhere than "
                                              "$SOFTMOA_HOME/data/NAME.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(min=0, metavar="N", help="Seed of the split of users' data that has none.")] = 0,
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", "-c", metavar="MODEL", help="The backbone whose features to compute (a Whisper, wav2vec2, "
        "HuBERT, WavLM or AST folder or hub id, or a run; its preprocessor_config.json decides them). Default: "
        "the AST's fbank.", show_default=False)] = None,
    home: Home = None,
) -> None:
    """Compute every clip's features into a memory-mapped cache for training: the AST's log-mels,
    or with --checkpoint that backbone's own (Whisper log-mels, 16 kHz waveform windows).

    NAME: a data set (esc50, us8k, speechcommands, fsc, fsdd, ...), a folder with one
    sub-folder per class, or a CSV/TSV manifest (path,label[,split][,fold]).

    Resumes an interrupted run; a finished one returns at once. Unreadable clips are skipped
    and listed in the cache's bad.tsv.

    Examples:
      softmoa prepare fsdd --workers 2
      softmoa prepare esc50 --max-length 500
      softmoa prepare ~/my_sounds                (one sub-folder per class)
      softmoa prepare ~/my_sounds/labels.csv --max-length 300
      softmoa prepare speechcommands --checkpoint facebook/wav2vec2-base
    """
    import time

    from ...engine.data.registry import resolve
    from ...engine.data.shares import parse_share

    share = parse_share(max_bad)  # wrong values fail before the work (and before torch loads)
    resolve(name, seed)

    from ...engine.config import ModelConfig
    from ...engine.data.cache import accept_bad
    from ...engine.data.cache_build import prepare_cache
    from ...engine.train.backbone import front_end
    from ..console import line, note
    from ..progress import ClipProgress

    features, said = front_end(ModelConfig(checkpoint=checkpoint))
    if said:
        note(said)
    started = time.perf_counter()
    with ClipProgress(name) as progress:
        cache, built = prepare_cache(name, max_length=max_length, workers=workers or min(8, os.cpu_count() or 1), home=home,
                                     data=data, seed=seed, progress=progress, message=note, front_end=features,
                                     **({} if max_seconds is None else {"max_seconds": max_seconds}))
    seconds = time.perf_counter() - started
    for path, reason in cache.bad[:SHOWN_BAD]:
        note(f"bad clip {path}: {reason}")
    if len(cache.bad) > SHOWN_BAD:
        note(f"... and {len(cache.bad) - SHOWN_BAD} more in {cache.report}")
    rate = f" in {seconds:.1f} s ({cache.listed / seconds:.0f} clips/s)" if built else " (already prepared)"
    bad = f", {len(cache.bad)} bad skipped (see {cache.report})" if cache.bad else ", 0 bad"
    line(f"{cache.name}: {len(cache):,} clips cached{bad}{rate}; max_length {cache.feature_config.max_length}; "
         f"{cache.path}")
    accept_bad(cache, share)

