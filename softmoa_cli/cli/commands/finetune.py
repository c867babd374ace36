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
    from ...engine.train.jobs import Job

METHOD = "Method options"


def _method(help: str, metavar: str = "NAME"):
    """A method option: help text, in the method panel."""
    return typer.Option(metavar=metavar, help=help, rich_help_panel=METHOD)


Method = Annotated[str | None, typer.Option("--method", "-m", metavar="NAME", help="linear, full, adapter, dense, soft "
                                            "or lora (default: the preset's, else soft).")]
Experts = Annotated[int | None, _method("Experts of a mixture (dense, soft).", "N")]
Slots = Annotated[int | None, _method("Slots per expert (soft).", "N")]
ReductionRate = Annotated[float | None, _method("Bottleneck r = round(d / rate).", "RATE")]
Location = Annotated[str | None, _method("mhsa or ffn (Pfeiffer).")]
AdapterConfig = Annotated[str | None, _method("pfeiffer or houlsby.")]
Init = Annotated[str | None, _method("zero_up or research.")]
Kind = Annotated[str | None, _method("bottleneck or convpass (adapter).")]
Placement = Annotated[str | None, _method("parallel or sequential (adapter).")]
Normalize = Annotated[bool | None, typer.Option("--normalize/--no-normalize", metavar="",
                                                help="Soft-MoE L2 normalisation (soft).", rich_help_panel=METHOD,
                                                show_default=False)]
Rank = Annotated[int | None, _method("LoRA rank.", "N")]
Alpha = Annotated[float | None, _method("LoRA alpha.", "X")]
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
    experts: Experts = None, slots: Slots = None, reduction_rate: ReductionRate = None, location: Location = None,
    adapter_config: AdapterConfig = None, init: Init = None, kind: Kind = None, placement: Placement = None,
    normalize: Normalize = None, rank: Rank = None, alpha: Alpha = None,
    max_length: MaxLength = None, max_seconds: MaxSeconds = None, fold: Fold = None, max_bad: MaxBad = None,
    epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None, seed: Seed = None,
    device: TrainingDevice = None, precision: Precision = None, compile: Compile = None, threads: Threads = None,
    accumulate: Accumulate = None, warmup: Warmup = None, patience: Patience = None, max_steps: MaxSteps = None,
    workers: Workers = None, log: Log = None, activation_checkpointing: ActivationCheckpointing = None,
    balanced_sampling: BalancedSampling = None, class_weights: ClassWeights = None, mixup: Mixup = None,
    set_: Settings = None, home: Home = None, runs: Runs = None, out: Out = None, resume: Resume = None,
    print_config: PrintConfig = False,
) -> None:
    """Fine-tune an AST with a PETL method; validate every epoch, test the best epoch.

    Without --dataset or --preset: the offline default (embedded synth data and backbone),
    training Soft-MoA and a single adapter of the same width and comparing them.

    Examples:
      softmoa finetune
      softmoa finetune --dataset fsc --method soft --experts 8 --slots 1
      softmoa finetune --dataset fsdd --preset fsdd-cpu --method adapter
      softmoa finetune -d esc50 --batch-size 8 --accumulate 4 --patience 5
      softmoa finetune -d fsdd --set training.weight_decay=0
      softmoa finetune --resume runs/fsdd-soft-20250101-120000
    """
    from ...engine.train.jobs import Job, resume_config

    overrides, flags = config_overrides(
        dataset=dataset, max_length=max_length, max_seconds=max_seconds, fold=parse_fold(fold), max_bad=max_bad,
        checkpoint=checkpoint,
        method=method, experts=experts, slots=slots, reduction_rate=reduction_rate, location=location,
        adapter_config=adapter_config, init=init, kind=kind, placement=placement, normalize=normalize, rank=rank,
        alpha=alpha, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, precision=precision,
        compile=compile, threads=threads, balanced_sampling=balanced_sampling, class_weights=class_weights,
        mixup=mixup, accumulate=accumulate, warmup=warmup, patience=patience, max_steps=max_steps, workers=workers,
        log=log or None, activation_checkpointing=activation_checkpointing)
    overrides, flags = with_settings(overrides, flags, set_)
    if resume is not None:
        given = [flags[key] for key in overrides] + (["--preset"] if preset else []) + (["--out"] if out else [])
        jobs = [Job(resume_config(resume, given), resume)]
    else:
        jobs = plan(dataset, preset, overrides, flags, out)
    if print_config:
        show_configs(jobs)
    else:
        from ..command_line import typed_command

        train(jobs, typed_command(ctx))


def plan(dataset: str | None, preset: str | None, overrides: dict, flags: dict, out: Path | None) -> list[Job]:
    """The engine's jobs for a new run; no data set or preset chosen: the offline default job."""
    from ...engine.train.jobs import plan_jobs
    from ..console import note

    default_job = dataset is None and preset is None
    path, chosen = preset_file(DEFAULT_DATASET if default_job else preset, dataset)
    jobs = plan_jobs(path, overrides, flags, out, default_job=default_job)  # valid, or one error line
    if default_job:
        note(f"no --dataset: the offline default (preset {DEFAULT_DATASET}: embedded data and backbone)")
    elif chosen:
        note(chosen)
    return jobs


def train(jobs: list[Job], command: str) -> None:
    """Train each job with live progress; show each result, and the comparison of several.
    ``command``: the command line, for each run's model card."""
    from ...engine.train import finetune as train_job
    from ...engine.train.jobs import is_main_process
    from ..progress import training_progress

    main = is_main_process()
    with training_progress(main) as progress:
        finished = [train_job(job.config, job.out, progress, command=command) for job in jobs]
    if main:
        for run_dir, metrics in finished:
            show_results(run_dir, metrics)
        if len(finished) > 1:
            show_comparison(finished)


def show_configs(jobs: list[Job]) -> None:
    """Each job's effective config as YAML, with the defaults that follow from its backbone
    filled in (the data's, such as a derived max_length, are known once the data is read)."""
    from ...engine.config import dump_config
    from ...engine.petl.methods import with_backbone_defaults
    from ...engine.train.backbone import backbone_dim
    from ..console import note, out

    for job in jobs:
        method, said = with_backbone_defaults(job.config.method, backbone_dim(job.config.model))
        if said:
            note(said)
        config = job.config.model_copy(update={"method": method})
        out.print(dump_config(config), end="", highlight=False, markup=False, soft_wrap=True)  # YAML unwrapped


def show_results(run_dir: Path, metrics: dict) -> None:
    """A run's table, one row per fold (multi-label: mAP, micro- and macro-F1, d′; the cost
    figures follow the table when it is narrow), the summary over folds and the run folder."""
    from ..console import Column, line, show_table

    multi = metrics.get("task") == "multilabel"
    if multi:
        scores = ("valid mAP", "test mAP", "micro-F1", "macro-F1", "d′")
        columns = [Column("fold", whole=True), Column("best epoch")] + [Column(name) for name in scores] + [
            Column(name, whole=name in ("checkpoint", "time"), optional=True)
            for name in ("trainable", "checkpoint", "time")]
    else:
        columns = [Column("fold", whole=True)] + [Column(name, whole=name in ("checkpoint", "time")) for name in (
            "best epoch", "valid acc", "test acc", "macro-F1", "trainable", "checkpoint", "time")]
    rows = []
    for key, fold in metrics["folds"].items():
        result = fold["test"]
        if multi:
            figures = [f"{result['valid_mAP']:.4f}", f"{result['mAP']:.4f}", f"{result['micro_f1']:.4f}",
                       f"{result['macro_f1']:.4f}", f"{result['d_prime']:.3f}"]
        else:
            figures = [f"{result['valid_accuracy']:.4f}", f"{result['accuracy']:.4f}", f"{result['macro_f1']:.4f}"]
        rows.append([key, str(result["best_epoch"]), *figures, f"{result['trainable_params']:,}",
                     f"{result['checkpoint_bytes'] / 1024:.1f} KiB", f"{result['train_seconds']:.0f} s"])
    show_table(columns, rows, f"{metrics['dataset']} · {metrics['method']}")
    summary = metrics["summary"]
    spread = lambda name: f"{summary[name + '_mean']:.4f} ± {summary[name + '_std']:.4f}"
    if summary.get("folds", 0) > 1 and multi:
        line(f"test mAP over {summary['folds']} folds: {spread('mAP')} (micro-F1 {spread('micro_f1')}, "
             f"macro-F1 {spread('macro_f1')}, d′ {summary['d_prime_mean']:.3f} ± {summary['d_prime_std']:.3f})")
    elif summary.get("folds", 0) > 1:
        line(f"test accuracy over {summary['folds']} folds: {summary['accuracy_mean']:.4f} ± "
             f"{summary['accuracy_std']:.4f} (macro-F1 {summary['macro_f1_mean']:.4f} ± "
             f"{summary['macro_f1_std']:.4f})")
    line(f"run: {run_dir}")


def show_comparison(finished: list[tuple[Path, dict]]) -> None:
    """The default job's summary: each method's test accuracy (multi-label: test mAP), trainable
    parameters and time; the run folders as lines below (whole, to be copied)."""
    from ..console import Column, line, show_table

    multi = all(metrics.get("task") == "multilabel" for _, metrics in finished)
    columns = [Column("method", "left", whole=True), Column("test mAP" if multi else "test accuracy"),
               Column("trainable params"), Column("training time", whole=True)]
    rows = []
    for run_dir, metrics in finished:
        result = metrics["folds"]["all"]["test"]
        rows.append([metrics["method"], f"{result['mAP' if multi else 'accuracy']:.4f}",
                     f"{result['trainable_params']:,}", f"{result['train_seconds']:.0f} s"])
    show_table(columns, rows, "offline default: Soft-MoA against a single adapter")
    for run_dir, metrics in finished:
        line(f"run ({metrics['method']}): {run_dir}")
    line(f"next: softmoa predict YOUR.wav (uses {finished[-1][0]}), softmoa evaluate, softmoa analyze "
         f"{finished[-1][0]}")
