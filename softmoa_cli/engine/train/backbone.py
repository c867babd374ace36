"""Which backbone a run uses, the features it takes, and the reference its checkpoints store to
rebuild it.

Order: the given checkpoint (``random``: the preset's random AST; ``embedded``: the tool's
own pretrained AST); otherwise the AudioSet AST if it is in the local Hugging Face cache;
otherwise the embedded AST, with one line that says how to get the AudioSet one. The features
(``front_end``) are read from the checkpoint's config files before its weights load, so the
data set's cache is made for them first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..task import SINGLE
from ..config import AST_BASE, ModelConfig
from ..data.features import FeatureConfig, describe
from ..errors import SoftmoaError
from ..hub import cached_hub_id, is_hub_id
from ..models.ast import AST, ASTConfig
from ..embedded.record import EMBEDDED, embedded_backbone
from ..models.hf_features import PREPROCESSOR
from ..models.pretrained import (AUDIOSET_HUB_ID, OWN_CONFIG, Pretrained, front_end_of, hub_folder, load_pretrained,
                                 own_backbone, save_model)
from ..runs.files import RANDOM_DIR, RUN_FILE
from ..runs.run import Run, backbone_path, load_backbone

AUDIOSET_DIM = 768  # width of the AudioSet AST


@dataclass
class Backbone:
    pretrained: Pretrained
    reference: str  # hub id (also for a hub cache folder), absolute path, or RANDOM_DIR (in the run folder)
    description: str  # one line for the user
    advice: str | None = None  # what the user can do for a better one (said once: ``Callback.advise``)


def cached_audioset() -> Path | None:
    """The AudioSet AST's folder in the local Hugging Face cache, without going online."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(AUDIOSET_HUB_ID, local_files_only=True,
                                      allow_patterns=["config.json", "*.safetensors"]))
    except Exception:  # not cached (or no huggingface_hub): the caller falls back
        return None


def resolve_backbone(model: ModelConfig, features: FeatureConfig, seed: int, callback=None,
                     run_dir: Path | None = None) -> Backbone:
    """Load (or create) the run's backbone.

    ``checkpoint``: a path, hub id or run (folder or pushed run's hub id); a snapshot folder of
    the hub cache is referred to by its hub id; ``embedded``: the tool's own pretrained AST;
    ``random``: the preset's randomly initialised AST (seeded, so every process creates the
    same one; a resumed run loads it from ``run_dir``; ``save_random_backbone`` writes it);
    unset: the AudioSet AST when it is in the local Hugging Face cache, else the embedded one,
    saying so and how to get the AudioSet AST.
    """
    checkpoint = model.checkpoint
    if checkpoint not in (None, "random", "embedded"):
        path = Path(checkpoint).expanduser()
        reference = (cached_hub_id(path) or str(path.resolve())) if path.exists() else checkpoint
        pretrained = load_backbone(reference)
        return Backbone(pretrained, reference, f"backbone: {reference} ({pretrained.model.family}, "
                                               f"{_dims(pretrained.model)})")
    cached = cached_audioset() if checkpoint is None else None
    if cached is not None:
        pretrained = load_pretrained(cached)
        return Backbone(pretrained, AUDIOSET_HUB_ID, f"backbone: {AUDIOSET_HUB_ID} from the local cache")
    if checkpoint == "random":
        return _random_backbone(model, run_dir, features, seed)
    from ..embedded.pretrain import describe

    path = embedded_backbone()
    advice = None if checkpoint == "embedded" else (
        f"the AudioSet AST ({AUDIOSET_HUB_ID}) is not in the local Hugging Face cache, so the embedded backbone "
        "serves: get the AudioSet one with `softmoa download ast-audioset` (online), or choose one with "
        "model.checkpoint")
    return Backbone(load_pretrained(path), EMBEDDED, f"backbone: {describe(path)}", advice)


def front_end(model: ModelConfig) -> tuple[FeatureConfig, str | None]:
    """The features the backbone of ``model.checkpoint`` takes (their window and bound are the
    data's), read without loading its weights, and a line saying what they are and where they
    come from (None for the tool's own ASTs: ``embedded``, ``random`` or unset, which take the
    AST's fbank). A hub id's config files come through the hub cache; a run's are its
    ``adapter.json``'s features."""
    checkpoint = model.checkpoint
    if checkpoint in (None, "random", "embedded"):
        return FeatureConfig(), None
    path = backbone_path(checkpoint)
    if (path / RUN_FILE).is_file():
        features, origin = Run(path, str(path)).adapter().features, f"the run {checkpoint}"
    else:
        if not path.exists() and is_hub_id(checkpoint):
            path = hub_folder(checkpoint, weights=False)
        features = FeatureConfig(**front_end_of(path))
        origin = (f"{checkpoint}'s {PREPROCESSOR}" if (path / PREPROCESSOR).is_file()
                  else f"{checkpoint}: its family's defaults, as it has no {PREPROCESSOR}")
    return features, f"features: {describe(features)} (from {origin})"


def check_front_end(backbone: Backbone, features: FeatureConfig) -> None:
    """A SoftmoaError when the backbone's input is not the features' window (another front end
    or other mel bins)."""
    model = backbone.pretrained.model
    takes = tuple(model.input_shape(features.max_length))
    if takes != features.window_shape or model.front_end != features.kind:
        raise SoftmoaError(f"{backbone.reference}: this {model.family} backbone takes {model.front_end} windows "
                           f"{takes}, but the data's features are {features.kind} windows {features.window_shape}")


def _random_backbone(model: ModelConfig, run_dir: Path | None, features: FeatureConfig, seed: int) -> Backbone:
    """A seeded random AST of ``model.random``'s dims (none given: AST-base's, and the
    description says so), or the one a resumed run saved."""
    saved = None if run_dir is None else run_dir / RANDOM_DIR
    why = "" if model.random else "; AST-base dims, as no model.random section gives others"
    if saved is not None and (saved / OWN_CONFIG).is_file():
        pretrained = load_pretrained(saved)
    else:
        r = model.random or AST_BASE
        config = ASTConfig(dim=r.dim, depth=r.depth, heads=r.heads, mlp_dim=r.mlp_dim, fstride=r.fstride,
                           tstride=r.tstride, num_mel_bins=features.num_mel_bins, max_length=features.max_length,
                           eps=1e-6)
        torch.manual_seed(seed)
        pretrained = Pretrained(AST(config), [], SINGLE, "random", {"has_head": False})
    return Backbone(pretrained, RANDOM_DIR, f"backbone: randomly initialised AST ({_dims(pretrained.model)}, "
                                            f"seed {seed}{why})")


def save_random_backbone(backbone: Backbone, run_dir: Path) -> None:
    """Keep a random backbone in its run folder (``RANDOM_DIR``), where the run's adapters find it."""
    if backbone.reference == RANDOM_DIR and not (run_dir / RANDOM_DIR / OWN_CONFIG).is_file():
        save_model(backbone.pretrained, run_dir / RANDOM_DIR)


def _dims(model: torch.nn.Module) -> str:
    c = model.config
    return f"dim {c.dim}, depth {c.depth}, heads {c.heads}"


def backbone_dim(model: ModelConfig) -> int:
    """Token width d of the backbone a run of ``model`` uses, read from config files without
    loading weights (the order of ``train.backbone.resolve_backbone``); 768 when unknown."""
    from ..embedded.pretrain import RECIPE

    if model.checkpoint == "random":
        return (model.random or AST_BASE).dim
    if model.checkpoint == "embedded" or (model.checkpoint is None and cached_audioset() is None):
        return RECIPE["ast"]["dim"]
    if model.checkpoint is None:
        return AUDIOSET_DIM
    return _checkpoint_dim(model.checkpoint)


def _checkpoint_dim(reference: str) -> int:
    """d from a softmoa model folder, a Hugging Face folder or cached hub id, or a run (folder or
    pushed run's hub id)."""
    path = backbone_path(reference)
    if (path / RUN_FILE).is_file():  # a full fine-tune as backbone: follow its own backbone
        inner = json.loads((path / RUN_FILE).read_text())["backbone"]
        return _checkpoint_dim(str(path / inner) if (path / inner).exists() else inner)
    if (path / OWN_CONFIG).is_file():
        return own_backbone(json.loads((path / OWN_CONFIG).read_text()))[1]["dim"]
    config = path / "config.json"
    if not config.is_file() and not path.exists():
        try:
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(reference, "config.json", local_files_only=True))
        except Exception:  # not a cached hub id: the run itself will say what is wrong
            return AUDIOSET_DIM
    if not config.is_file():
        return AUDIOSET_DIM
    fields = json.loads(config.read_text())
    return fields.get("hidden_size", fields.get("d_model", AUDIOSET_DIM))  # Whisper names it d_model
