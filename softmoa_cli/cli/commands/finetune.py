"""``softmoa finetune``: train a PETL method on a data set, from a preset plus flags."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..options import (DEFAULT_DATASET, TRAINING, Accumulate, ActivationCheckpointing, BalancedSampling, BatchSize,
                       Checkpoint, ClassWeights, Dataset, Epochs, Home, Log, Lr, MaxLength, MaxSeconds, MaxSteps, Mixup,
                       Patience, Preset, Runs, Settings, Threads, TrainingDevice, Warmup, Workers, config_overrides,
                       parse_fold, preset_file, with_settings)

if TYPE_CHECKING:
    from ...engine.train.planning import PlannedRun

Method = Annotated[str | None, typer.Option("--method", "-m", metavar="NAME", help="linear, full, adapter, dense, soft, "
                                            "lora or a plugin's method (default: the preset's, else soft); each "
                                            "method's options are under Method options.")]
Fold = Annotated[str | None, typer.Option(metavar="K", help="K-fold data sets: one test fold K, or 'all' (default).")]
MaxBad = Annotated[str | None, typer.Option(metavar="SHARE", help="Share of bad clips to accept, as 0.05 or 5% "
                                            "(default: what prepare accepted, else 1%).", show_default=False)]
Seed = Annotated[int | None, typer.Option(metavar="N", help="Seed of the weights' initialisation and the data "
                                          "order (default: the preset's, else 0).", rich_help_panel=TRAINING)]
Precision = Annotated[str | None, typer.Option(metavar="NAME", help="auto, fp32, bf16 or fp16 (autocast; fp16 with a "
                                               "gradient scaler, for GPUs without bf16) (default: the preset's, else "
                                               "auto: bf16 on CUDA, fp32 on CPU).", rich_help_panel=TRAINING)]
Compile = Annotated[bool | None, typer.Option("--compile/--no-compile", metavar="", help="torch.compile the model.",
                                              rich_help_panel=TRAINING, show_default=False)]
Out = Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR",
                                          help="Run folder (default runs/<dataset>-<method>-<time>).")]
Resume = Annotated[Path | None, typer.Option(metavar="RUN", help="Continue an interrupted run, its folder given, with "
                                                                 "its saved config.")]
PrintConfig = Annotated[bool, typer.Option("--print-config", metavar="", help="Print the effective config and exit.")]


def finetune(
    ctx: typer.Context,
    dataset: Dataset = None, preset: Preset = None, method: Method = None, checkpoint: Checkpoint = None,
    max_length: MaxLength = None, max_seconds: MaxSeconds = None, fold: Fold = None, max_bad: MaxBad = None,
    epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None, seed: Seed = None,
    device: TrainingDevice = None, precision: Precision = None, compile: Compile = None, threads: Threads = None,
    accumulate: Accumulate = None, warmup: Warmup = None, patience: Patience = None, max_steps: MaxSteps = None,
    workers: Workers = None, log: Log = None, activation_checkpointing: ActivationCheckpointing = None,
    balanced_sampling: BalancedSampling = None, class_weights: ClassWeights = None, mixup: Mixup = None,
    set_: Settings = None, home: Home = None, runs: Runs = None, out: Out = None, resume: Resume = None,
    print_config: PrintConfig = False, method_options: dict | None = None,
) -> None:
    """Fine-tune a backbone (AST, Whisper's encoder, wav2vec2, HuBERT, WavLM) with a PETL method;
    validate every epoch, test the best epoch. The features follow --checkpoint.

    Every registered method's options (its config's fields) are flags, under Method options.
    Without --dataset or --preset: the offline default (embedded synth data and backbone),
    training Soft-MoA and a single adapter of the same width and comparing them.

    Examples:
      softmoa finetune
      softmoa finetune --dataset fsc --method soft --experts 8 --slots 1
      softmoa finetune --dataset fsdd --preset fsdd-cpu --method adapter
      softmoa finetune -d esc50 --batch-size 8 --accumulate 4 --patience 5
      softmoa finetune -d fsdd --set training.weight_decay=0
      softmoa finetune -d fsdd --checkpoint openai/whisper-base --method soft
      softmoa finetune --resume runs/fsdd-soft-20250101-120000
    """
    from ...engine.train.planning import PlannedRun, resume_config

    overrides, flags = config_overrides(
        dataset=dataset, max_length=max_length, max_seconds=max_seconds, fold=parse_fold(fold), max_bad=max_bad,
        checkpoint=checkpoint, method=method, **(method_options or {}), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, precision=precision,
        compile=compile, threads=threads, balanced_sampling=balanced_sampling, class_weights=class_weights,
        mixup=mixup, accumulate=accumulate, warmup=warmup, patience=patience, max_steps=max_steps, workers=workers,
        log=log or None, activation_checkpointing=activation_checkpointing)
    overrides, flags = with_settings(overrides, flags, set_)
    if resume is not None:
        given = [flags[key] for key in overrides] + (["--preset"] if preset else []) + (["--out"] if out else [])
        planned = [PlannedRun(resume_config(resume, given), resume)]
    else:
        planned = plan(dataset, preset, overrides, flags, out)
    if print_config:
        show_configs(planned)
    else:
        from ..command_line import typed_command

        train(planned, typed_command(ctx))


def plan(dataset: str | None, preset: str | None, overrides: dict, flags: dict, out: Path | None) -> list[PlannedRun]:
    """The runs a new command plans; no data set or preset chosen: the offline default's two."""
    from ...engine.train.planning import plan_runs
    from ..console import note

    default_run = dataset is None and preset is None
    path, chosen = preset_file(DEFAULT_DATASET if default_run else preset, dataset)
    planned = plan_runs(path, overrides, flags, out, default_run=default_run)  # valid, or one error line
    if default_run:
        note(f"no --dataset: the offline default (preset {DEFAULT_DATASET}: embedded data and backbone)")
    elif chosen:
        note(chosen)
    return planned


def train(planned: list[PlannedRun], command: str) -> None:
    """Train each planned run with live progress; show each result, and the comparison of several.
    ``command``: the command line, for each run's model card."""
    from ...engine.train import finetune as train_run
    from ...engine.train.planning import is_main_process
    from ..progress import training_progress

    main = is_main_process()
    with training_progress(main) as progress:
        finished = [train_run(run.config, run.out, progress, command=command) for run in planned]
    if main:
        for run_dir, metrics in finished:
            show_results(run_dir, metrics)
        if len(finished) > 1:
            show_comparison(finished)


def show_configs(planned: list[PlannedRun]) -> None:
    """Each planned run's effective config as YAML, with the defaults that follow from its backbone
    filled in (the data's, such as a derived max_length, are known once the data is read)."""
    from ...engine.config import dump_config
    from ...engine.petl.methods import with_backbone_defaults
    from ...engine.train.backbone import backbone_dim
    from ..console import note, out

    for planned_run in planned:
        method, said = with_backbone_defaults(planned_run.config.method, backbone_dim(planned_run.config.model))
        if said:
            note(said)
        config = planned_run.config.model_copy(update={"method": method})
        out.print(dump_config(config), end="", highlight=False, markup=False, soft_wrap=True)  # YAML unwrapped


def show_results(run_dir: Path, metrics) -> None:
    """A run's table (``metrics``: ``RunMetrics``), one row per fold: best epoch, the validation
    score and the test metrics of its task (``Task.columns``), then (following the table when
    it is narrow) the cost figures; the summary over folds and the run folder."""
    from ..console import Column, line, show_table

    task = metrics.task
    columns = ([Column("fold", whole=True), Column("best epoch"), Column(f"valid {task.metric}")]
               + [Column(f"test {header}" if k == 0 else header) for k, (header, _, _) in enumerate(task.columns)]
               + [Column(name, whole=name in ("adapter", "time"), optional=True)
                  for name in ("trainable", "adapter", "time")])
    rows = []
    for key, record in metrics.folds.items():
        result = record.result
        rows.append([key, str(result.best_epoch), f"{result.valid_score:.4f}",
                     *(f"{result.scores[name]:.{digits}f}" for _, name, digits in task.columns),
                     f"{result.trainable_params:,}", f"{(result.adapter_bytes or 0) / 1024:.1f} KiB",
                     f"{result.train_seconds:.0f} s"])
    show_table(columns, rows, f"{metrics.dataset} · {metrics.method}")
    summary = metrics.summary()
    if summary.get("folds", 0) > 1:
        spread = [f"{header} {summary[name + '_mean']:.{digits}f} ± {summary[name + '_std']:.{digits}f}"
                  for header, name, digits in task.columns]
        line(f"over {summary['folds']} folds: " + " · ".join(spread))
    line(f"run: {run_dir}")


def show_comparison(finished: list[tuple[Path, object]]) -> None:
    """The offline default's summary: each method's test score (its task's), trainable parameters
    and time; the run folders as lines below (whole, to be copied)."""
    from ..console import Column, line, show_table

    metric = finished[-1][1].task.metric
    columns = [Column("method", "left", whole=True), Column(f"test {metric}"),
               Column("trainable params"), Column("training time", whole=True)]
    rows = []
    for run_dir, metrics in finished:
        result = metrics.folds["all"].result
        rows.append([metrics.method, f"{result.scores[metric]:.4f}", f"{result.trainable_params:,}",
                     f"{result.train_seconds:.0f} s"])
    show_table(columns, rows, "offline default: Soft-MoA against a single adapter")
    for run_dir, metrics in finished:
        line(f"run ({metrics.method}): {run_dir}")
    line(f"next: softmoa predict YOUR.wav (uses {finished[-1][0]}), softmoa evaluate, softmoa analyze "
         f"{finished[-1][0]}")
