"""Shared option definitions (``Annotated`` aliases) for the commands, and the flags that set
run-config keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

TRAINING = "Training"  # help panel of the training flags
UNBALANCED = "Unbalanced data"  # help panel of balanced sampling, class weights and mixup
MEMORY = "Memory"  # help panel of activation checkpointing (its long flag would be cut in the Training panel's table)
DEFAULT_DATASET = "synth"  # the offline default: embedded synth data and backbone

# Help shows a metavar (N, PATH, ...) for every value, never Python's type (<int>, <list[str]>);
# a flag shows none.
def _device(value: str | None) -> str | None:
    """A device flag names one (auto, cpu, cuda, cuda:N, mps), checked before torch loads."""
    from ..engine.config import check_device

    try:
        return value if value is None else check_device(value)
    except ValueError as error:
        raise typer.BadParameter(f"{value}: {error}") from None


def positive(value: float | None) -> float | None:
    """A value that must be above 0 (seconds, a window, a hop)."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g} is not above 0")
    return value


Device = Annotated[str, typer.Option(metavar="DEVICE", callback=_device, help="cpu, cuda, cuda:1, ...")]
def _quantize(value: str | None) -> str | None:
    """``--quantize``: int8 is the one choice."""
    if value is not None and value != "int8":
        raise typer.BadParameter(f"{value}: the one choice is int8")
    return value


Quantize = Annotated[str | None, typer.Option(
    metavar="int8", show_default=False, callback=_quantize,
    help="Score with the backbone's frozen Linears in int8 (CPU only; faster on wide backbones, scores move "
         "slightly with the batch; see the README's int8 section).")]
Json = Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON document on stdout instead of tables.")]
Threads = Annotated[int | None, typer.Option(min=1, metavar="N", help="CPU threads for torch (default: torch's "
                                                                      "choice).", show_default=False)]


def _frames(value: int | None) -> int | None:
    """``--max-length`` is at least 16 frames (one patch), as the run config requires."""
    if value is not None and value < 16:
        raise typer.BadParameter(f"{value} is below 16 frames")
    return value


MaxLength = Annotated[int | None, typer.Option(callback=_frames, metavar="FRAMES", show_default=False,
                                               help="Input frames of 10 ms each, 16 or more (default: the data set's, "
                                                    "unless a preset sets it).")]
Checkpoint = Annotated[str | None, typer.Option(
    "--checkpoint", "-c", metavar="MODEL", help="Backbone: a checkpoint folder or hub id (AST, Whisper, wav2vec2, "
                               "HuBERT, WavLM; e.g. MIT/ast-finetuned-audioset-10-10-0.4593, openai/whisper-base, "
                               "facebook/wav2vec2-base), an AST .pth, a run folder of a full fine-tune, 'embedded' (the "
                               "tool's own pretrained AST) or 'random' (the preset's random AST); its features follow "
                               "it. Default: the preset's, else the AudioSet AST if cached, else embedded.")]
# Arguments are described in their command's help (Typer would show a Python type beside them).
RunDir = Annotated[Path | None, typer.Argument(metavar="RUN", hidden=True, show_default=False)]
def _sets(variable: str):
    """A callback for a folder flag whose environment variable the engine reads wherever it needs
    that folder (``--home``: SOFTMOA_HOME, ``--runs``: SOFTMOA_RUNS): the flag sets it."""
    def callback(value: Path | None) -> Path | None:
        import os

        if value is not None:
            os.environ[variable] = str(value)
        return value
    return callback


Home = Annotated[Path | None, typer.Option(
    "--home", envvar="SOFTMOA_HOME", metavar="DIR", callback=_sets("SOFTMOA_HOME"), show_default=False,
    help="Data sets, feature caches and checkpoints live here (default ~/.softmoa; also SOFTMOA_HOME).")]

# Options of the commands that train (finetune, ablate); each sets the run-config key of CONFIG_FLAGS.
Dataset = Annotated[str | None, typer.Option(
    "--dataset", "-d", metavar="DATA", help="esc50, us8k, speechcommands, fsc, fsdd, synth, a registered data set, a "
                                            "folder of class folders or a CSV/TSV manifest (default: the preset's, "
                                            f"else {DEFAULT_DATASET}).")]
Preset = Annotated[str | None, typer.Option("--preset", "-p", metavar="PRESET", help="YAML preset file or a name "
                                            "from presets/ (default: the preset named after the data set).")]
Epochs = Annotated[int | None, typer.Option(metavar="N", help="Passes over the training clips (default: the "
                                                              "preset's, else 10).", rich_help_panel=TRAINING)]
BatchSize = Annotated[int | None, typer.Option(metavar="N", help="Clips through the model at once, over all DDP "
                                                "processes together; with --accumulate, one micro-batch (default: the "
                                                "preset's, else 32).", rich_help_panel=TRAINING)]


def _training(metavar: str, help: str):
    """An optional training flag in the Training panel; its help says the default."""
    return typer.Option(metavar=metavar, show_default=False, rich_help_panel=TRAINING, help=help)


Accumulate = Annotated[int | None, _training(
    "N", "Gradient accumulation: N micro-batches of --batch-size per optimiser step, so the effective batch is "
         "batch size x N at the memory of one micro-batch; the schedule counts optimiser steps (default 1).")]
Warmup = Annotated[float | None, _training(
    "STEPS", "Linear warm-up from 0 before the cosine decay: optimiser steps (1 or more), or a fraction of all "
             "of them below 1, e.g. 0.1 (default 0).")]
Patience = Annotated[int | None, _training(
    "N", "Early stopping: stop after N epochs without a better validation score; the best epoch is still "
         "tested (default: off).")]
MaxSteps = Annotated[int | None, _training(
    "N", "Train exactly N optimiser steps, overriding --epochs (the last epoch may be partial); the schedule "
         "spans them.")]
Workers = Annotated[int | None, _training(
    "N", "Processes assembling training batches from the feature cache ahead of the step (pinned memory on "
         "CUDA); 0: in the training process (default 0).")]
Log = Annotated[list[str] | None, _training(
    "NAME", "Also log to tensorboard (event files in the run folder) or mlflow (at its tracking URI); "
            "repeatable; each needs the extra of its name. log.csv is always written.")]
ActivationCheckpointing = Annotated[bool | None, typer.Option(
    "--activation-checkpointing", metavar="", show_default=False,
    rich_help_panel=MEMORY,
    help="Recompute each transformer block's activations in the backward: far less memory, about one more "
         "forward per step (default: off).")]
Lr = Annotated[float | None, typer.Option(metavar="LR", help="Peak learning rate (default: the preset's, else the "
                                                             "recipe's for the method).", rich_help_panel=TRAINING)]
TrainingDevice = Annotated[str | None, typer.Option(metavar="DEVICE", help="auto (cuda if present), cpu, cuda, "
                                                    "cuda:1, ... (default: the preset's, else auto).",
                                                    rich_help_panel=TRAINING, callback=_device)]
BalancedSampling = Annotated[bool | None, typer.Option(
    "--balanced-sampling/--no-balancing", metavar="", show_default=False, rich_help_panel=UNBALANCED,
    help="Draw each epoch's clips with replacement, weighted by the inverse frequency of their labels in the "
         "training split, as AST's sampler (default: the preset's, else off).")]
ClassWeights = Annotated[bool | None, typer.Option(
    "--class-weights/--no-class-weights", metavar="", show_default=False, rich_help_panel=UNBALANCED,
    help="Weight each class's loss by its inverse label frequency in the training split, normalised to mean 1 "
         "(default: the preset's, else off).")]
Mixup = Annotated[float | None, typer.Option(
    metavar="ALPHA", show_default=False, rich_help_panel=UNBALANCED,
    help="Mix each batch with a shuffled copy of itself, features and label vectors, by lambda ~ Beta(ALPHA, "
         "ALPHA); 0: off (default: the preset's, else 0).")]

MaxSeconds = Annotated[float | None, typer.Option(
    callback=positive, metavar="SECONDS", show_default=False,
    help="Keep each clip up to its first SECONDS (default 600); training reads a random max-length crop of a "
         "longer clip each epoch, evaluation scores all of its windows. Another bound is another feature cache.")]

def config_key(name: str) -> str | None:
    """The run-config key a command parameter ``name`` sets, read from the schema: ``method`` ->
    ``method.name``; a field of the data, model or training section, or an option of a method,
    -> its dotted key (``max_length`` -> ``data.max_length``, ``experts`` -> ``method.experts``);
    None for a parameter that sets no key (``--out``, ``--preset``)."""
    from ..engine.config import setting_keys

    if name == "method":
        return "method.name"
    return next((key for key in setting_keys() if key.count(".") == 1 and key.split(".")[1] == name), None)


def config_overrides(**values: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A command's config flags, passed by parameter name (``max_length=...``): the overrides
    (dotted key -> value, the flags given) and the flags (dotted key -> flag) of those parameters."""
    keys = {name: config_key(name) for name in values}
    unknown = sorted(name for name, key in keys.items() if key is None)
    if unknown:
        raise TypeError(f"not a config flag: {', '.join(unknown)}")
    overrides = {keys[name]: value for name, value in values.items() if value is not None}
    return overrides, {key: f"--{name.replace('_', '-')}" for name, key in keys.items()}


Settings = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", show_default=False,
    help="Any config key, dotted, e.g. training.weight_decay=0 or method.experts=16 (repeatable; values as YAML).")]


def parse_settings(items: list[str] | None) -> dict:
    """``--set`` values: ``["training.weight_decay=0", ...]`` -> ``{"training.weight_decay": 0}`` (values as YAML)."""
    import yaml

    from ..engine.errors import SoftmoaError

    settings = {}
    for item in items or []:
        key, eq, text = item.partition("=")
        if not eq or not key.strip() or " " in key.strip():
            raise SoftmoaError(f"--set {item}: expected KEY=VALUE with a dotted config key, "
                               "e.g. --set training.weight_decay=0")
        try:
            settings[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise SoftmoaError(f"--set {item}: {text!r} is not a valid value") from None
    return settings


def with_settings(overrides: dict, flags: dict, items: list[str] | None) -> tuple[dict, dict]:
    """A command's config overrides and flags with its ``--set`` settings added (a flag wins over
    ``--set`` of the same key); errors name ``--set KEY``."""
    settings = parse_settings(items)
    return settings | overrides, {key: f"--set {key}" for key in settings} | flags


def parse_fold(value: str | None) -> int | None | str:
    """``--fold``: 'all' (every fold) is the default; otherwise a fold number."""
    if value is None or value == "all":
        return None
    if value.isdigit():
        return int(value)
    return value  # the config rejects it with the key, the value and what is allowed


def chosen_run(run: Path | None) -> Path:
    """RUN, or without it the most recent finished run under runs/, with a note saying which."""
    from ..engine.errors import SoftmoaError
    from ..engine.runs.folder import runs_dir_said
    from ..engine.runs.run import latest_run
    from .console import note

    if run is not None:
        return run
    latest = latest_run()
    if latest is None:
        raise SoftmoaError(f"no finished run under {runs_dir_said()}: pass a RUN folder, or train one with "
                           "`softmoa finetune`")
    note(f"run: {latest}")
    return latest


def preset_file(preset: str | None, dataset: str | None) -> tuple[Path | None, str | None]:
    """``--preset`` as a file (a path, or a name in presets/); without it, the preset named after
    the data set (default synth) if there is one, and the line that says which (to print once
    the config it starts is valid: a bad flag's error is then the only line)."""
    from ..config import default_preset, find_preset

    if preset:
        return find_preset(preset), None
    path = default_preset(dataset or DEFAULT_DATASET)
    return path, None if path is None else f"preset: {path}"
RunDataset = Annotated[str | None, typer.Option(
    "--dataset", "-d", metavar="DATA", show_default=False,
    help="Score on this copy of the run's data set (a registered name, a folder or a manifest with the run's labels) "
         "instead of the one it recorded; needed for a pushed run trained on a local data set.")]
AudioFiles = Annotated[list[Path], typer.Argument(metavar="AUDIO", hidden=True, show_default=False)]
Classifier = Annotated[str | None, typer.Option(
    "--checkpoint", "-c", metavar="MODEL", help="A classifier checkpoint: a folder or hub id of an AST, "
                                                "WhisperForAudioClassification or wav2vec2/HuBERT/WavLM "
                                                "ForSequenceClassification (scored with its own head and "
                                                "preprocessor_config.json), an AST .pth, or a standalone export; "
                                                "e.g. MIT/ast-finetuned-audioset-10-10-0.4593.")]
Runs = Annotated[Path | None, typer.Option(
    "--runs", envvar="SOFTMOA_RUNS", metavar="DIR", callback=_sets("SOFTMOA_RUNS"), show_default=False,
    help="Where runs are written and the most recent one is looked for (default: runs/ of the current folder; "
         "also SOFTMOA_RUNS).")]
