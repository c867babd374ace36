"""The schema of a run and its validation: one pydantic model per concern, unknown keys forbidden.

A run config (a preset, or a run folder's ``config.yaml``) has the sections ``data``,
``model``, ``method`` and ``training``; the method section is the discriminated union (on
``name``) of the PETL method configs registered in ``petl/methods.py``. This module is the one
source for validation, defaults and the help text of the matching command-line flags; finding
preset files by name is the job of ``softmoa_cli/config/presets.py``.

Errors are one line that names the key, the value and what is allowed, e.g.
``presets/x.yaml: training.epocs = 3: unknown key; allowed: epochs, batch_size, ...``.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import SoftmoaError
from .petl.methods import METHODS, SoftConfig
from .registry import unknown_name

# Every registered method, plugins included (each config has a ``name: Literal[...]`` tag).
MethodSection = Annotated[Union[tuple(METHODS.get(name).config for name in METHODS.names())],
                          Field(discriminator="name")]

DEVICES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # the devices a run or a command can name


def check_device(value: str) -> str:
    """``value`` if it names a device (auto, cpu, cuda, cuda:N, mps); else a ValueError saying so."""
    if not isinstance(value, str) or not DEVICES.fullmatch(value):
        raise ValueError("give auto, cpu, cuda, cuda:N (a GPU's index) or mps")
    return value

# Learning rates of the research code's recipe (docs/recipes.md), used when a preset sets none.
RECIPE_LR = {"linear": 1e-3, "full": 5e-5}
PETL_LR = 5e-3


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpecAugment(Section):
    """Frequency and time masking of training features (0 turns a mask off)."""

    freq_mask: int = Field(0, ge=0, description="widest frequency mask, mel bins (none on waveform windows)")
    time_mask: int = Field(0, ge=0, description="widest time mask, frames of 10 ms (on a waveform: its samples)")


class DataConfig(Section):
    dataset: str = Field(description="registered data set name (esc50, us8k, speechcommands, fsc, fsdd, ...)")
    max_length: int | None = Field(None, ge=16, description="input frames of 10 ms; unset: the data set's default")
    fold: int | None = Field(None, ge=1, description="k-fold data sets: the one test fold to run; unset: all folds")
    valid_fraction: float = Field(0.1, gt=0, lt=1, description="share of the training clips held out for "
                                                               "validation when the data set has no validation split")
    spec_augment: SpecAugment = SpecAugment()
    task: Literal["auto", "multilabel"] = Field("auto", description="auto: multi-label when the data has label "
                                                                    "sets, else single-label; multilabel: always "
                                                                    "(sigmoid outputs, BCE, mAP)")
    max_bad: float | None = Field(None, description="share of bad clips to accept, 0.05 or '5%'; unset: the share "
                                                    "accepted when the cache was prepared (default 1%)")
    max_seconds: float = Field(600.0, gt=0, description="each clip is kept up to its first N seconds (training crops "
                                                        "clips longer than max_length at random; evaluation scores "
                                                        "every window); another bound is another feature cache")

    def task_of(self, labels):
        """The task of a data set with these ``labels``: theirs, or multi-label when ``task`` says so."""
        from .task import TASKS, task_of

        return TASKS[self.task] if self.task != "auto" else task_of(labels)

    @field_validator("max_bad", mode="before")
    @classmethod
    def _share(cls, value):
        from .data.shares import parse_share

        try:
            return None if value is None else parse_share(value)
        except SoftmoaError:
            raise ValueError("give a share of the clips, such as 0.05 or 5%") from None


class RandomBackbone(Section):
    """Dims of a randomly initialised AST, used when the checkpoint is ``random``; a run without
    this section gets AST-base's (``AST_BASE``)."""

    dim: int = Field(192, ge=8)
    depth: int = Field(4, ge=1)
    heads: int = Field(3, ge=1)
    mlp_dim: int = Field(768, ge=8)
    fstride: int = Field(10, ge=1, le=16, description="patch stride over frequency (16: no overlap)")
    tstride: int = Field(10, ge=1, le=16, description="patch stride over time (16: no overlap)")


AST_BASE = RandomBackbone(dim=768, depth=12, heads=12, mlp_dim=3072)  # the AudioSet AST's shape


class ModelConfig(Section):
    checkpoint: str | None = Field(None, description="backbone: a checkpoint path or hub id (AST, Whisper, wav2vec2, "
                                                     "HuBERT, WavLM), a run folder of a full fine-tune, 'embedded' (the "
                                                     "tool's own pretrained AST) or 'random' (the AST of the random "
                                                     "section); unset: the AudioSet AST if cached, else embedded")
    random: RandomBackbone | None = Field(None, description="dims of the randomly initialised AST used when "
                                                            "checkpoint is 'random'")


class TrainingConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="clips through the model at once, over all DDP processes together "
                                                  "(split between them); with accumulate, one micro-batch")
    eval_batch_size: int | None = Field(None, ge=1, description="unset: twice the training batch")
    lr: float | None = Field(None, gt=0, description="peak learning rate; unset: the recipe's value for the method")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay on weight matrices only (2 or more axes; never biases, norms or tokens)")
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-6, gt=0)
    seed: int = Field(0, ge=0)
    device: str = Field("auto", description="auto (cuda if present), cpu, cuda, cuda:1, ...")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU; fp16: float16 autocast with a gradient scaler "
                            "(GPUs without bf16, such as the T4; runs on the CPU too, slower than fp32)")
    compile: bool = Field(False, description="torch.compile the model")
    # Training at scale: what an optimiser step is, its schedule, when to stop, how data arrives.
    accumulate: int = Field(1, ge=1, description="micro-batches per optimiser step: each of batch_size clips, so the "
                                                 "effective batch is batch_size x accumulate; gradients are summed, "
                                                 "and under DDP synchronised once, at the last micro-batch")
    warmup: float = Field(0, ge=0, description="linear warm-up from 0 before the cosine decay: optimiser steps (1 or "
                                               "more, whole), or a fraction of all optimiser steps (below 1, e.g. 0.1)")
    patience: int | None = Field(None, ge=1, description="early stopping: stop after this many epochs without a "
                                                         "better validation score (the best epoch is still tested); "
                                                         "unset: off")
    max_steps: int | None = Field(None, ge=1, description="train exactly this many optimiser steps, overriding epochs "
                                                          "(the last epoch may be partial); the schedule spans them")
    workers: int = Field(0, ge=0, description="processes assembling training batches from the memory-mapped cache "
                                              "(pinned memory on CUDA, prefetched); 0: in the training process")
    log: list[Literal["tensorboard", "mlflow"]] = Field(
        [], description="trackers besides log.csv (which stays the record): tensorboard (event files in the run "
                        "folder) and/or mlflow (MLFLOW_TRACKING_URI, default ./mlruns); optional extras")
    activation_checkpointing: bool = Field(False, description="recompute each transformer block's activations in the "
                                                              "backward: far less memory, about one more forward")
    resume_every: int = Field(50, ge=1, description="optimiser steps between saves of the resume state (also at "
                                                    "every epoch end)")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; unset: torch's default")
    # Unbalanced data (train/sampling.py). All off: training is exactly as without them.
    balanced_sampling: bool = Field(False, description="draw each epoch's clips with replacement, a clip's weight "
                                                       "the sum over its labels of 1 / that label's count in the "
                                                       "training split (AST's sampler); steps per epoch unchanged")
    class_weights: bool = Field(False, description="weight each class's loss by its inverse label frequency in the "
                                                   "training split, normalised to mean 1 over the classes present "
                                                   "(absent classes: 1); not with balanced_sampling (one "
                                                   "correction or the other)")
    mixup: float = Field(0, ge=0, description="mixup: each step mixes the batch with a shuffled copy of itself, "
                                              "features and label vectors, by lambda ~ Beta(alpha, alpha); "
                                              "the alpha, 0: off")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, values):
        """Configs written before the rename (``checkpoint_every``) still read."""
        if isinstance(values, dict) and "checkpoint_every" in values and "resume_every" not in values:
            values = {("resume_every" if key == "checkpoint_every" else key): value for key, value in values.items()}
        return values

    @field_validator("warmup")
    @classmethod
    def _warmup(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("give whole optimiser steps (1 or more) or a fraction below 1, such as 0.1")
        return value

    _device = field_validator("device")(classmethod(lambda cls, value: check_device(value)))

    @field_validator("log", mode="before")
    @classmethod
    def _log(cls, value):
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_correction(self):
        if self.balanced_sampling and self.class_weights:
            raise ValueError("training.balanced_sampling and training.class_weights both correct for unbalanced "
                             "labels (together they favour rare classes twice); use one of the two")
        return self

    def warmup_steps(self, total_steps: int) -> int:
        """Warm-up optimiser steps out of ``total_steps``: ``warmup`` itself, or its fraction of them."""
        return int(self.warmup) if self.warmup >= 1 else round(self.warmup * total_steps)

    def learning_rate(self, method: str) -> float:
        return self.lr if self.lr is not None else RECIPE_LR.get(method, PETL_LR)


class RunConfig(Section):
    """Everything a fine-tuning run depends on; saved as ``config.yaml`` in the run folder."""

    data: DataConfig
    model: ModelConfig = ModelConfig()
    method: MethodSection = SoftConfig()
    training: TrainingConfig = TrainingConfig()


class ConfigError(SoftmoaError):
    """A preset or a flag that does not validate."""


def read_preset(path: str | Path) -> dict:
    """The mapping in a YAML preset or a run's ``config.yaml``; a syntax error names its line."""
    path = Path(path)
    try:
        value = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read preset ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where} ({getattr(error, 'problem', error)})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: a preset is a mapping with sections data, model, method, training; "
                          f"found a {type(value).__name__}")
    return value


def apply_overrides(preset: dict, overrides: dict[str, Any]) -> dict:
    """A copy of ``preset`` with dotted keys (``training.epochs``) set; ``None`` values are skipped.

    Choosing another method (``method.name``) starts that method from its own defaults: the
    preset's options of the old method do not carry over.
    """
    result = copy.deepcopy(preset)
    given = {key: value for key, value in overrides.items() if value is not None}
    new_method = given.get("method.name")
    if new_method is not None and (result.get("method") or {}).get("name") != new_method:
        result["method"] = {}
    for key, value in given.items():
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return result


def build_config(preset: dict, overrides: dict[str, Any] | None = None, source: str = "preset",
                 flags: dict[str, str] | None = None) -> RunConfig:
    """Validate ``preset`` with ``overrides`` applied. ``flags`` maps dotted keys to the
    command-line flags that set them, so that errors name the flag the user typed."""
    overrides = overrides or {}
    raw = apply_overrides(preset, overrides)
    if isinstance(raw.get("method"), dict) and "name" not in raw["method"]:  # options alone: the default method's
        raw["method"] = {"name": RunConfig.model_fields["method"].default.name, **raw["method"]}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        given = {key for key, value in overrides.items() if value is not None}
        messages = [_describe(item, raw, source, given, flags or {}) for item in error.errors()]
        raise ConfigError("; ".join(messages)) from None


def read_config(path: str | Path) -> RunConfig:
    """A validated config from a YAML file (a run folder's ``config.yaml``)."""
    return build_config(read_preset(path), source=str(path))


def dump_config(config: RunConfig) -> str:
    """The effective config as YAML, in the preset layout."""
    values = config.model_dump(mode="json")
    values["method"] = {"name": values["method"].pop("name"), **values["method"]}
    return yaml.safe_dump(values, sort_keys=False)


# ---------------------------------------------------------------- error messages

def _describe(item: dict, raw: dict, source: str, given: set[str], flags: dict[str, str]) -> str:
    loc = [str(part) for part in item["loc"]]
    if len(loc) > 1 and loc[0] == "method" and loc[1] in METHODS:
        del loc[1]  # pydantic puts the union tag into the location
    key = ".".join(loc)
    value = item.get("input")
    kind = item["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key, value = f"{key}.name", value.get("name") if isinstance(value, dict) else value
    setting = ".".join(loc[:-1]) if loc[-1].isdigit() else key  # an item of a list (training.log.0): the list's
    flag = flags.get(setting) if setting in given else None
    origin = f"{flag} {value}" if flag else f"{source}: {key} = {value!r}"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(raw, loc[:-1])
        owner = f"method {raw['method'].get('name')!r}" if loc[:-1] == ["method"] else (".".join(loc[:-1]) or "a preset")
        owners = [name for name in METHODS.names() if loc[-1] in METHODS.get(name).config.model_fields]
        where = (f"; {loc[-1]} is an option of {' and '.join(owners)}: choose it with "
                 f"{flags.get('method.name', 'method.name')}" if loc[:-1] == ["method"] and owners else "")
        return f"{origin}: unknown key for {owner}; allowed: {', '.join(allowed)}{where}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"{origin}: {unknown_name('method', value, METHODS.names(), 'allowed', show_name=False)}"
    if kind == "missing":
        return f"{source}: {key}: required, not given"
    if isinstance(value, dict):  # a rule over a whole section: its message names the keys, as flags where typed
        text = item["msg"].removeprefix("Value error, ")
        for setting, flag in flags.items():
            if setting in given:
                text = text.replace(setting, flag)
        return f"{source}: {text}" if text == item["msg"].removeprefix("Value error, ") else text
    text = item["msg"].removeprefix("Value error, ")
    return f"{origin}: {text[0].lower()}{text[1:]}"


def setting_keys() -> list[str]:
    """Every dotted key a run config takes: the fields of the data, model and training sections
    (nested sections walked: ``data.spec_augment.freq_mask``) and ``method.X`` for each option
    of every registered method."""
    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        keys = []
        for name, field in model.model_fields.items():
            try:
                keys += walk(_section_type(field.annotation), f"{prefix}{name}.")
            except (TypeError, StopIteration):
                keys.append(f"{prefix}{name}")
        return keys

    keys = [key for section in ("data", "model", "training")
            for key in walk(RunConfig.model_fields[section].annotation, f"{section}.")]
    options = dict.fromkeys(name for method in METHODS.names() for name in METHODS.get(method).config.model_fields)
    return keys + [f"method.{name}" for name in options]


def _allowed_keys(raw: dict, loc: list[str]) -> list[str]:
    """The field names of the section at ``loc`` (the method section: of the chosen method)."""
    model: type[BaseModel] = RunConfig
    for part in loc:
        if model is RunConfig and part == "method":
            model = METHODS.get(raw["method"].get("name", "soft")).config
            continue
        model = _section_type(model.model_fields[part].annotation)
    return list(model.model_fields)


def _section_type(annotation) -> type[BaseModel]:
    """The pydantic model inside ``X`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel))
    raise TypeError(f"not a config section: {annotation!r}")
