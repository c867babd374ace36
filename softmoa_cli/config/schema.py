"""The schema of a run: one pydantic model per concern, unknown keys forbidden.

A preset YAML has the sections ``data``, ``model``, ``method`` and ``training``; the method
section is the discriminated union (on ``name``) of the PETL method configs of
``engine/petl/methods.py``. This module is the one source for validation, defaults and the
help text of the matching command-line flags.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..engine.petl.methods import METHODS, SoftConfig

# Every registered method, plugins included (each config has a ``name: Literal[...]`` tag).
MethodSection = Annotated[Union[tuple(METHODS.get(name).config for name in METHODS.names())],
                          Field(discriminator="name")]

# Learning rates of the research code's recipe (method.md section 6), used when a preset sets none.
RECIPE_LR = {"linear": 1e-3, "full": 5e-5}
PETL_LR = 5e-3


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpecAugment(Section):
    """Frequency and time masking of training features (0 turns a mask off)."""

    freq_mask: int = Field(0, ge=0, description="widest frequency mask, mel bins")
    time_mask: int = Field(0, ge=0, description="widest time mask, frames")


class DataConfig(Section):
    dataset: str = Field(description="registered data set name (esc50, us8k, speechcommands, fsc, fsdd, ...)")
    max_length: int | None = Field(None, ge=16, description="input frames of 10 ms; unset: the data set's default")
    fold: int | None = Field(None, ge=1, description="k-fold data sets: the one test fold to run; unset: all folds")
    valid_fraction: float = Field(0.1, gt=0, lt=1, description="share of the training clips held out for "
                                                               "validation when the data set has no validation split")
    spec_augment: SpecAugment = SpecAugment()
    max_bad: float | None = Field(None, description="share of bad clips to accept, 0.05 or '5%'; unset: the share "
                                                    "accepted when the cache was prepared (default 1%)")

    @field_validator("max_bad", mode="before")
    @classmethod
    def _share(cls, value):
        from ..engine.data.cache import parse_share
        from ..engine.errors import SoftmoaError

        try:
            return None if value is None else parse_share(value)
        except SoftmoaError:
            raise ValueError("give a share of the clips, such as 0.05 or 5%") from None


class RandomBackbone(Section):
    """Dims of a randomly initialised AST, used when the checkpoint is ``random``."""

    dim: int = Field(192, ge=8)
    depth: int = Field(4, ge=1)
    heads: int = Field(3, ge=1)
    mlp_dim: int = Field(768, ge=8)
    fstride: int = Field(10, ge=1, le=16, description="patch stride over frequency (16: no overlap)")
    tstride: int = Field(10, ge=1, le=16, description="patch stride over time (16: no overlap)")


class ModelConfig(Section):
    checkpoint: str | None = Field(None, description="backbone: AST checkpoint path, hub id, run folder of a full "
                                                     "fine-tune, 'embedded' (the tool's own pretrained AST) or "
                                                     "'random' (the AST of the random section); unset: the AudioSet AST "
                                                     "if cached, else embedded")
    random: RandomBackbone | None = Field(None, description="dims of the randomly initialised AST used when "
                                                            "checkpoint is 'random'")


class TrainingConfig(Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="global batch (split over DDP processes)")
    eval_batch_size: int | None = Field(None, ge=1, description="unset: twice the training batch")
    lr: float | None = Field(None, gt=0, description="peak learning rate; unset: the recipe's value for the method")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay on weight matrices only (2 or more axes; never biases, norms or tokens)")
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-6, gt=0)
    seed: int = 0
    device: str = Field("auto", description="auto (cuda if present), cpu, cuda, cuda:1, ...")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    compile: bool = Field(False, description="torch.compile the model")
    checkpoint_every: int = Field(50, ge=1, description="steps between resume checkpoints (also every epoch end)")
    threads: int | None = Field(None, ge=1, description="CPU threads for torch; unset: torch's default")

    def learning_rate(self, method: str) -> float:
        return self.lr if self.lr is not None else RECIPE_LR.get(method, PETL_LR)


class RunConfig(Section):
    """Everything a fine-tuning run depends on; saved as ``config.yaml`` in the run folder."""

    data: DataConfig
    model: ModelConfig = ModelConfig()
    method: MethodSection = SoftConfig()
    training: TrainingConfig = TrainingConfig()
