"""``softmoa ablate``: one of the paper's studies as a grid of finetune runs, a table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..options import (DEFAULT_DATASET, Accumulate, BalancedSampling, BatchSize, Checkpoint, ClassWeights, Dataset,
                       Epochs, Home, Lr, MaxLength, Mixup, Preset, Settings, Threads, TrainingDevice, Workers,
                       config_overrides, preset_file, with_settings)

def ablate(
    study: Annotated[str, typer.Argument(metavar="STUDY", hidden=True, show_default=False)],
    values: Annotated[str | None, typer.Option(metavar="LIST", help="Comma-separated grid instead of the study's "
                                                                    "default, e.g. 1,2,4.")] = None,
    dataset: Dataset = None,
    preset: Preset = None,
    checkpoint: Checkpoint = None,
    epochs: Epochs = None,
    seeds: Annotated[int, typer.Option(min=1, metavar="N", help="Runs per value (seeds 0..N-1 added to the preset's); "
                                            "error bars need 2 or more.")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help="Study folder (default "
                                             "ablations/<study>-<dataset>); rerun the same command to continue "
                                             "it.")] = None,
    batch_size: BatchSize = None,
    accumulate: Accumulate = None,
    workers: Workers = None,
    lr: Lr = None,
    device: TrainingDevice = None,
    threads: Threads = None,
    max_length: MaxLength = None,
    balanced_sampling: BalancedSampling = None,
    class_weights: ClassWeights = None,
    mixup: Mixup = None,
    set_: Settings = None,
    home: Home = None,
) -> None:
    """Run one of the paper's ablations: every grid value (x seeds) is an ordinary fine-tuning
    run; writes results.csv, results.md and plot.png into the study folder.

    STUDY: slots, experts, reduction-rate, location, adapter-config, init, or methods (linear,
    adapter, lora, dense, soft, full at the Soft-MoA's budget).

    Examples:
      softmoa ablate slots
      softmoa ablate experts --dataset fsdd --seeds 3
      softmoa ablate methods -d fsdd --epochs 5 --set training.weight_decay=0
    """
    from ...engine.ablate import get_study, parse_values, run_study, study_config
    from ...engine.train.planning import base_preset, study_dir
    from ..console import note

    chosen = get_study(study)
    grid = parse_values(chosen, values)
    overrides, flags = config_overrides(dataset=dataset, max_length=max_length, checkpoint=checkpoint, epochs=epochs,
                                        batch_size=batch_size, lr=lr, device=device, threads=threads,
                                        balanced_sampling=balanced_sampling, class_weights=class_weights,
                                        mixup=mixup, accumulate=accumulate, workers=workers)
    overrides, flags = with_settings(overrides, flags, set_)
    path, chosen_preset = preset_file(preset, dataset)
    raw, source = base_preset(path, DEFAULT_DATASET)
    base = study_config(chosen, raw, overrides, source, flags)
    if chosen_preset:
        note(chosen_preset)
    folder = out or study_dir(chosen.name, base)
    rows = run_study(chosen, base, folder, grid, seeds, train=_train_with_progress, on_point=_announce, message=note)
    show_results(chosen, base, rows, folder)


def _announce(index: int, total: int, label: str, reused: bool) -> None:
    from ..console import err

    err.rule(f"[{index}/{total}] {label}" + (" · done before, reused" if reused else ""), style="dim")


def _train_with_progress(config, run_dir: Path) -> dict:
    from ...engine.train import finetune
    from ..progress import TrainingProgress

    with TrainingProgress() as progress:
        return finetune(config, run_dir, progress)[1]


def show_results(study, base, rows: list[dict], folder: Path) -> None:
    from ...engine.ablate.summary import columns as headers, describe_base, format_row, row_metric
    from ..console import Column, line, note, show_table

    # The values and their "mean ± std" (test accuracy, or test mAP on multi-label data) stay
    # whole; narrow, the cost figures follow the table.
    metric = row_metric(rows[0])
    columns = [Column(title, "left" if name == "value" else "right", whole=name in ("value", metric),
                      optional=name in ("flops", "epoch_seconds", "peak_memory_mib"))
               for name, title in headers(metric).items()]
    show_table(columns, [list(format_row(row).values()) for row in rows], f"ablate {study.name}: {study.description}")
    line(describe_base(study, base))
    note(f"wrote {folder / 'results.csv'}, {folder / 'results.md'} and {folder / 'plot.png'}")
