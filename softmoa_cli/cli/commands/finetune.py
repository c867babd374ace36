"""``softmoa finetune``: train a PETL method on a data set, from a preset plus flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..options import Checkpoint

DEFAULT_PRESET = "synth"
METHOD = "Method options"
TRAIN = "Training"


def finetune(
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="esc50, us8k, speechcommands, fsc, fsdd, "
                                                                        "synth, a registered data set, a folder of class "
                                                                        "folders or a CSV/TSV manifest (default: synth).")] = None,
    preset: Annotated[str | None, typer.Option("--preset", "-p", help="YAML preset file or a name from presets/ "
                                                                      "(default: the preset named after the data set).")] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="linear, full, adapter, dense, soft or lora.")] = None,
    checkpoint: Checkpoint = None,
    experts: Annotated[int | None, typer.Option(help="Experts of a mixture (dense, soft).", rich_help_panel=METHOD)] = None,
    slots: Annotated[int | None, typer.Option(help="Slots per expert (soft).", rich_help_panel=METHOD)] = None,
    reduction_rate: Annotated[float | None, typer.Option(help="Bottleneck r = round(d / rate).",
                                                         rich_help_panel=METHOD)] = None,
    location: Annotated[str | None, typer.Option(help="mhsa or ffn (Pfeiffer).", rich_help_panel=METHOD)] = None,
    adapter_config: Annotated[str | None, typer.Option(help="pfeiffer or houlsby.", rich_help_panel=METHOD)] = None,
    init: Annotated[str | None, typer.Option(help="zero_up or research.", rich_help_panel=METHOD)] = None,
    kind: Annotated[str | None, typer.Option(help="bottleneck or convpass (adapter).", rich_help_panel=METHOD)] = None,
    placement: Annotated[str | None, typer.Option(help="parallel or sequential (adapter).",
                                                  rich_help_panel=METHOD)] = None,
    normalize: Annotated[bool | None, typer.Option("--normalize/--no-normalize", help="Soft-MoE L2 normalisation (soft).",
                                                   rich_help_panel=METHOD, show_default=False)] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank.", rich_help_panel=METHOD)] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha.", rich_help_panel=METHOD)] = None,
    max_length: Annotated[int | None, typer.Option(help="Input frames (10 ms each).")] = None,
    fold: Annotated[str | None, typer.Option(help="K-fold data sets: one test fold K, or 'all' (default).")] = None,
    max_bad: Annotated[str | None, typer.Option(help="Share of bad clips to accept, as 0.05 or 5% (default: what "
                                                      "prepare accepted, else 1%).", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(rich_help_panel=TRAIN)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch.", rich_help_panel=TRAIN)] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.", rich_help_panel=TRAIN)] = None,
    seed: Annotated[int | None, typer.Option(rich_help_panel=TRAIN)] = None,
    device: Annotated[str | None, typer.Option(help="auto (cuda if present), cpu, cuda, cuda:1, ...",
                                                                rich_help_panel=TRAIN)] = None,
    precision: Annotated[str | None, typer.Option(help="fp32 or bf16 (autocast); default bf16 on CUDA.",
                                                  rich_help_panel=TRAIN)] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model.",
                                                 rich_help_panel=TRAIN, show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads.", rich_help_panel=TRAIN)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<dataset>-<method>-<time>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run folder with its saved config.")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the effective config and exit.")] = False,
) -> None:
    """Fine-tune an AST with a PETL method; validate every epoch, test the best epoch.

    Without --dataset or --preset: the offline default (embedded synth data and backbone),
    training Soft-MoA and a single adapter of the same width and comparing them.

    Examples:
      softmoa finetune
      softmoa finetune --dataset fsc --method soft --experts 8 --slots 1
      softmoa finetune --dataset fsdd --preset presets/fsdd-cpu.yaml --method adapter
      softmoa finetune --resume runs/fsdd-soft-20250101-120000
    """
    from ...config import default_preset, find_preset
    from ...engine.config import ConfigError, build_config, dump_config, read_preset
    from ..console import note, out as stdout

    given = {
        ("data.dataset", "--dataset"): dataset, ("data.max_length", "--max-length"): max_length,
        ("data.fold", "--fold"): _fold(fold), ("data.max_bad", "--max-bad"): max_bad, ("model.checkpoint", "--checkpoint"): checkpoint,
        ("method.name", "--method"): method, ("method.experts", "--experts"): experts,
        ("method.slots", "--slots"): slots, ("method.reduction_rate", "--reduction-rate"): reduction_rate,
        ("method.location", "--location"): location, ("method.adapter_config", "--adapter-config"): adapter_config,
        ("method.init", "--init"): init, ("method.kind", "--kind"): kind, ("method.placement", "--placement"): placement,
        ("method.normalize", "--normalize"): normalize, ("method.rank", "--rank"): rank, ("method.alpha", "--alpha"): alpha,
        ("training.epochs", "--epochs"): epochs, ("training.batch_size", "--batch-size"): batch_size,
        ("training.lr", "--lr"): lr, ("training.seed", "--seed"): seed, ("training.device", "--device"): device,
        ("training.precision", "--precision"): precision, ("training.compile", "--compile"): compile,
        ("training.threads", "--threads"): threads,
    }
    overrides = {key: value for (key, _), value in given.items() if value is not None}
    flags = {key: flag for key, flag in given}
    default_job = False
    if resume is not None:
        extra = [flag for (key, flag), value in given.items() if value is not None] + (["--preset"] if preset else [])
        if extra or out is not None:
            raise ConfigError(f"--resume takes the config saved in {resume}/config.yaml; drop "
                              f"{', '.join(extra + (['--out'] if out else []))}")
        path = resume / "config.yaml"
        if not path.is_file():
            raise ConfigError(f"--resume {resume}: not a run folder (no config.yaml)")
        config = build_config(read_preset(path), source=str(path))
        out = resume
    else:
        default_job = dataset is None and preset is None
        if default_job:
            preset = DEFAULT_PRESET
            note(f"no --dataset: the offline default (preset {DEFAULT_PRESET}: embedded data and backbone)")
        path = find_preset(preset) if preset else default_preset(dataset)
        if path is not None and not preset:
            note(f"preset: {path}")
        config = build_config(read_preset(path) if path else {}, overrides, str(path) if path else "defaults", flags)
    jobs = [(config, out)]
    if default_job and method is None:
        # The default job: the single adapter of the same width first, then Soft-MoA (the latest run).
        from ...engine.petl.methods import AdapterConfig

        shared = {k: v for k, v in overrides.items()
                  if not k.startswith("method.") or k.split(".", 1)[1] in AdapterConfig.model_fields}
        width = {"method.name": "adapter", "method.reduction_rate": config.method.reduction_rate}
        adapter = build_config(read_preset(path), shared | width, str(path), flags)
        jobs = [(adapter, out and out / "adapter"), (config, out and out / config.method.name)]
    if print_config:
        for job, _ in jobs:
            stdout.print(dump_config(job), end="", highlight=False, markup=False)
        return

    from ...engine.train import finetune as train

    main = int(os.environ.get("RANK", "0")) == 0
    finished = []
    with RichProgress() if main else _Quiet() as progress:
        for job, job_out in jobs:
            finished.append(train(job, job_out, progress))
    if main:
        for run_dir, metrics in finished:
            show_results(run_dir, metrics)
        if len(finished) > 1:
            show_comparison(finished)


def _fold(value: str | None) -> int | None | str:
    """``--fold``: 'all' (every fold) is the default; otherwise a fold number."""
    if value is None or value == "all":
        return None
    if value.isdigit():
        return int(value)
    return value  # the config rejects it with the key, the value and what is allowed


def show_results(run_dir: Path, metrics: dict) -> None:
    from rich.table import Table

    from ..console import out

    table = Table(title=f"{metrics['dataset']} · {metrics['method']}", show_edge=False)
    for column in ("fold", "best epoch", "valid acc", "test acc", "macro-F1", "trainable", "checkpoint", "time"):
        table.add_column(column, justify="right")
    for key, fold in metrics["folds"].items():
        result = fold["test"]
        table.add_row(key, str(result["best_epoch"]), f"{result['valid_accuracy']:.4f}", f"{result['accuracy']:.4f}",
                      f"{result['macro_f1']:.4f}", f"{result['trainable_params']:,}",
                      f"{result['checkpoint_bytes'] / 1024:.1f} KiB", f"{result['train_seconds']:.0f} s")
    out.print(table)
    summary = metrics["summary"]
    if summary.get("folds", 0) > 1:
        out.print(f"test accuracy over {summary['folds']} folds: {summary['accuracy_mean']:.4f} ± "
                  f"{summary['accuracy_std']:.4f} (macro-F1 {summary['macro_f1_mean']:.4f} ± {summary['macro_f1_std']:.4f})")
    out.print(f"run: {run_dir}")


def show_comparison(finished: list[tuple[Path, dict]]) -> None:
    """The default job's summary: each method's test accuracy, trainable parameters and time."""
    from rich.table import Table

    from ..console import out

    table = Table(title="offline default: Soft-MoA against a single adapter", show_edge=False)
    for column in ("method", "test accuracy", "trainable params", "training time", "run"):
        table.add_column(column, justify="left" if column in ("method", "run") else "right")
    for run_dir, metrics in finished:
        result = metrics["folds"]["all"]["test"]
        table.add_row(metrics["method"], f"{result['accuracy']:.4f}", f"{result['trainable_params']:,}",
                      f"{result['train_seconds']:.0f} s", str(run_dir))
    out.print(table)
    out.print(f"next: softmoa predict YOUR.wav (uses {finished[-1][0]}), softmoa evaluate, softmoa analyze "
              f"{finished[-1][0]}")


class _Quiet:
    """The callback of ranks other than 0: nothing to show."""

    def __enter__(self):
        from ...engine.train import Callback

        return Callback()

    def __exit__(self, *exc):
        return False


class RichProgress:
    """Rich live progress for the engine's callback: epoch, step, loss, accuracy, samples/s, ETA."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ...engine.train import Callback
        from ..console import err, note

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=err, transient=False)
        self.progress = progress

        class View(Callback):
            task = None

            def fold_start(self, fold, folds, epochs, steps):
                name = "train" if fold is None else f"fold {fold}/{folds}"
                self.task = progress.add_task(name, total=epochs * steps, stats="")

            def step(self, info):
                done = (info.epoch - 1) * info.steps + info.step
                progress.update(self.task, completed=done, stats=(
                    f"epoch {info.epoch}/{info.epochs} · loss {info.loss:.4f} · acc {info.accuracy:.3f} · "
                    f"{info.samples_per_s:.0f} samples/s · ETA {_duration(info.eta_s)}"))

            def epoch_end(self, fold, record):
                progress.console.print(f"  epoch {record['epoch']}: train loss {record['train_loss']:.4f} "
                                       f"acc {record['train_accuracy']:.4f} · valid loss {record['valid_loss']:.4f} "
                                       f"acc {record['valid_accuracy']:.4f}", highlight=False)

            def fold_end(self, fold, result):
                progress.console.print(f"  best epoch {result['best_epoch']} (valid {result['valid_accuracy']:.4f}) "
                                       f"→ test accuracy {result['accuracy']:.4f}", highlight=False)

            def message(self, text):
                note(text)

        progress.start()
        return View()

    def __exit__(self, *exc):
        self.progress.stop()
        return False


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
