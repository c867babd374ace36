"""Which backbone a run uses, and the reference its checkpoints store to rebuild it.

Order: the given checkpoint (``random`` forces the preset's random AST); otherwise the
AudioSet AST if it is in the local Hugging Face cache; otherwise the preset's randomly
initialised AST if it names one; otherwise an error that says how to get a backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...config.schema import ModelConfig
from ..data.features import FeatureConfig
from ..errors import CheckpointError, SoftmoaError
from ..models.ast import AST, ASTConfig
from ..models.checkpoints import AUDIOSET_HUB_ID, Pretrained, load_pretrained, save_model
from .checkpoint import load_backbone

RANDOM_DIR = "backbone"


@dataclass
class Backbone:
    pretrained: Pretrained
    reference: str  # hub id, absolute path, or RANDOM_DIR (inside the run folder)
    description: str  # one line for the user


def cached_audioset() -> Path | None:
    """The AudioSet AST's folder in the local Hugging Face cache, without going online."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(AUDIOSET_HUB_ID, local_files_only=True,
                                      allow_patterns=["config.json", "*.safetensors"]))
    except Exception:  # not cached (or no huggingface_hub): the caller falls back
        return None


def resolve_backbone(model: ModelConfig, run_dir: Path, features: FeatureConfig, seed: int,
                     main: bool = True) -> Backbone:
    """Load (or create, in the run folder, by the main process) the run's backbone."""
    checkpoint = model.checkpoint
    if checkpoint not in (None, "random"):
        path = Path(checkpoint).expanduser()
        reference = str(path.resolve()) if path.exists() else checkpoint
        pretrained = load_backbone(reference)
        return Backbone(pretrained, reference, f"backbone: {reference} ({_dims(pretrained.model)})")
    cached = cached_audioset() if checkpoint is None else None
    if cached is not None:
        pretrained = load_pretrained(cached)
        return Backbone(pretrained, AUDIOSET_HUB_ID, f"backbone: {AUDIOSET_HUB_ID} from the local cache")
    if model.random is None:
        if checkpoint == "random":
            raise SoftmoaError("--checkpoint random: the preset has no model.random section with the AST dims")
        raise CheckpointError(f"no backbone: the AudioSet AST ({AUDIOSET_HUB_ID}) is not in the local Hugging Face "
                              "cache; pass --checkpoint PATH|HUB_ID|RUN_DIR, run `softmoa download ast-audioset`, "
                              "or use a preset with a model.random section")
    directory = run_dir / RANDOM_DIR
    if main and not (directory / "softmoa.json").is_file():
        r = model.random
        config = ASTConfig(dim=r.dim, depth=r.depth, heads=r.heads, mlp_dim=r.mlp_dim,
                           num_mel_bins=features.num_mel_bins, max_length=features.max_length, eps=1e-6)
        torch.manual_seed(seed)
        save_model(Pretrained(AST(config), [], False, "random", {"has_head": False}), directory)
    pretrained = load_pretrained(directory)
    return Backbone(pretrained, RANDOM_DIR, f"backbone: randomly initialised AST ({_dims(pretrained.model)}, "
                                            f"seed {seed}), no pretrained weights; --checkpoint picks a pretrained one")


def _dims(model: AST) -> str:
    c = model.config
    return f"dim {c.dim}, depth {c.depth}, heads {c.heads}"
