"""Loading backbone weights from every format we meet, through explicit, checked key maps.

Sources: a Hugging Face directory or hub id (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``; its ``model_type`` picks the backbone family, ``families.py``), the AST
authors' original ``.pth`` (timm keys under ``module.v.``), and this tool's own saved models
(``softmoa.json`` + ``model.safetensors``); one of these may hold PETL modules (a standalone
export of an adapter run), which its ``method`` rebuilds. Untrusted files load only through
safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ... import __version__
from ..errors import CheckpointError
from ..fsutil import atomic_save_tensors, atomic_write_json
from ..hub import is_hub_id
from ..registry import Registry
from ..task import MULTI, SINGLE, task_named
from .ast import AST, ASTConfig
from .checkpoint import Pretrained, apply_key_map, hf_labels, read_state
from .families import FAMILIES, family_for_model_type
from .hf_features import PREPROCESSOR, default_features, features_of

__all__ = ["Pretrained", "front_end_of", "load_pretrained", "save_model"]

AUDIOSET_HUB_ID = "MIT/ast-finetuned-audioset-10-10-0.4593"
OWN_CONFIG = "softmoa.json"
OWN_WEIGHTS = "model.safetensors"
# How a saved model's recorded PETL modules are put back into a plain backbone: ``rebuild(model,
# method) -> model`` under the name "method". That knowledge sits in layers above this one (they
# import models), so it arrives through the entry-point group, as plugins do.
MODEL_PARTS: Registry = Registry("model part", "softmoa.model_parts")


# ---------------------------------------------------------------- formats

def _hf_config(directory: Path) -> dict:
    try:
        return json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{directory / 'config.json'}: unreadable config ({error})") from None


def _load_hf_dir(directory: Path, source: str) -> Pretrained:
    config = _hf_config(directory)
    family = family_for_model_type(config.get("model_type"), str(directory / "config.json"))
    weights = next((directory / name for name in ("model.safetensors", "pytorch_model.bin")
                    if (directory / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin beside config.json")
    model, has_head = family.load_hf(config, read_state(weights), str(weights))
    num_classes, labels = model.config.num_classes, hf_labels(config)
    problem = config.get("problem_type")
    tagger = problem == "multi_label_classification" or (problem is None and num_classes == 527)  # AudioSet's
    features = features_of(directory)
    return Pretrained(model, labels if len(labels) == num_classes else [f"LABEL_{i}" for i in range(num_classes)],
                      MULTI if tagger else SINGLE, source, {"has_head": has_head} | ({"features": features} if features else {}))


def _load_original_pth(path: Path, overrides: dict) -> Pretrained:
    """The AST authors' checkpoints: timm DeiT keys under ``module.v.``, head ``module.mlp_head``."""
    state = {re.sub(r"^module\.", "", k): v for k, v in read_state(path).items()}
    # The DeiT's own ImageNet heads ride along in the authors' files but their forward never
    # uses them; any other unknown tensor is still refused below.
    for name in ("v.head.weight", "v.head.bias", "v.head_dist.weight", "v.head_dist.bias"):
        state.pop(name, None)
    if "v.cls_token" not in state:
        raise CheckpointError(f"{path}: not an AST checkpoint (no 'module.v.cls_token' key)")
    dim = state["v.cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"v\.blocks\.(\d+)\.", k)))
    patch = state["v.patch_embed.proj.weight"].shape[-1]
    has_head = "mlp_head.1.weight" in state
    # LayerNorm eps as in the authors' model: timm's 1e-6 in the DeiT, PyTorch's default 1e-5 in mlp_head.
    base = ASTConfig(dim=dim, depth=depth, heads=max(dim // 64, 1), mlp_dim=state["v.blocks.0.mlp.fc1.weight"].shape[0],
                     patch_size=patch, num_classes=state["mlp_head.1.weight"].shape[0] if has_head else 527,
                     eps=1e-6, head_eps=1e-5, pool="cls_dist", head_norm=True)
    base = base.replace(**overrides)
    time = (state["v.pos_embed"].shape[1] - 2) // base.grid[0]
    # The weights fix the time grid, not max_length: keep the configured length (1024 for
    # AudioSet) when it gives that grid, else the shortest length that does.
    ast_config = base if base.grid[1] == time else base.replace(max_length=(time - 1) * base.tstride + base.patch_size)
    # Split the fused qkv projection into our q, k, v.
    for i in range(depth):
        for kind in ("weight", "bias"):
            fused = state.pop(f"v.blocks.{i}.attn.qkv.{kind}", None)
            if fused is not None:
                for name, part in zip("qkv", fused.chunk(3, dim=0)):
                    state[f"v.blocks.{i}.attn.{name}.{kind}"] = part
    key_map = {"patch_embed.weight": "v.patch_embed.proj.weight", "patch_embed.bias": "v.patch_embed.proj.bias",
               "cls_token": "v.cls_token", "dist_token": "v.dist_token", "pos_embed": "v.pos_embed",
               "norm.weight": "v.norm.weight", "norm.bias": "v.norm.bias"}
    for i in range(depth):
        for name in ("norm1", "attn.q", "attn.k", "attn.v", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            for kind in ("weight", "bias"):
                key_map[f"blocks.{i}.{name}.{kind}"] = f"v.blocks.{i}.{name}.{kind}"
    if has_head:
        key_map |= {"head.norm.weight": "mlp_head.0.weight", "head.norm.bias": "mlp_head.0.bias",
                    "head.fc.weight": "mlp_head.1.weight", "head.fc.bias": "mlp_head.1.bias"}
    model = AST(ast_config)
    apply_key_map(model, state, key_map, str(path))
    labels = [f"LABEL_{i}" for i in range(ast_config.num_classes)]
    return Pretrained(model, labels, MULTI if ast_config.num_classes == 527 else SINGLE, str(path),
                      {"has_head": has_head})


def own_backbone(meta: dict) -> tuple[str, dict]:
    """``(family, config as a dict)`` of a ``softmoa.json``: ``"family"`` and ``"config"``, or
    ``"ast"`` alone in folders saved before there were other families (the embedded backbone)."""
    if "config" in meta:
        return meta["family"], meta["config"]
    return "ast", meta["ast"]


def _load_own(directory: Path) -> Pretrained:
    meta = json.loads((directory / OWN_CONFIG).read_text())
    if meta.get("format") != "softmoa-model":
        raise CheckpointError(f"{directory / OWN_CONFIG}: not a softmoa model (format {meta.get('format')!r})")
    name, config = own_backbone(meta)
    family = FAMILIES.get(name)
    model = family.model(family.config(**config))
    if meta.get("method") is not None:
        model = MODEL_PARTS.get("method")(model, meta["method"])
    state = read_state(directory / OWN_WEIGHTS)
    apply_key_map(model, state, {k: k for k in model.state_dict()}, str(directory / OWN_WEIGHTS))
    task = task_named(meta.get("task") or ("multilabel" if meta.get("multi_label") else None))  # older: a bool
    return Pretrained(model, meta["labels"], task, str(directory), meta.get("extra", {}), meta.get("method"))


def save_model(pretrained: Pretrained, directory: str | Path) -> Path:
    """Save a backbone in this tool's format (its family and config), with the config of its PETL
    modules when it has some (``pretrained.method``); each file is written atomically."""
    directory = Path(directory)
    model = pretrained.model
    atomic_save_tensors(directory / OWN_WEIGHTS, model.state_dict())
    atomic_write_json(directory / OWN_CONFIG, {
        "format": "softmoa-model", "version": __version__, "family": model.family, "config": model.config.to_dict(),
        "labels": list(pretrained.labels), "task": pretrained.task.name, "extra": pretrained.extra,
        **({"method": pretrained.method} if pretrained.method is not None else {})})
    return directory


def hub_folder(repo_id: str, weights: bool = True) -> Path:
    """The snapshot folder of a hub id, fetched through the Hugging Face cache (offline: from it):
    its config files, and with ``weights`` its weights."""
    patterns = ["config.json", PREPROCESSOR] + (["*.safetensors", "pytorch_model.bin"] if weights else [])
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{repo_id}: cannot get this checkpoint from the Hugging Face hub or its cache ({reason}); "
            "pass a local directory or file with `checkpoint`, or run `softmoa download NAME` (the list: "
            "`softmoa download`) on a machine online") from None


def front_end_of(path: Path) -> dict:
    """The front end a local checkpoint takes (``data.features.FeatureConfig``'s fields), read
    from its config files without its weights: a softmoa model's recorded features, else its
    family's; a Hugging Face folder's ``preprocessor_config.json``, else its family's extractor
    defaults; an AST ``.pth``: the AST's (``{}``, the defaults)."""
    if path.is_dir() and (path / OWN_CONFIG).is_file():
        meta = json.loads((path / OWN_CONFIG).read_text())
        if "features" in meta.get("extra", {}):
            return meta["extra"]["features"]
        name, config = own_backbone(meta)
        return default_features(FAMILIES.get(name).model.front_end, config)
    if path.is_dir() and (path / "config.json").is_file():
        found = features_of(path)
        if found is not None:
            return found
        config = _hf_config(path)
        family = family_for_model_type(config.get("model_type"), str(path / "config.json"))
        return default_features(family.model.front_end, config)
    return {}


def load_pretrained(source: str | Path, max_length: int | None = None, **overrides) -> Pretrained:
    """Load a backbone from a path (HF directory, original ``.pth``, softmoa model) or a hub id.

    ``max_length`` adapts the position information to another input length (frames of 10 ms);
    ``overrides`` set ASTConfig fields an original ``.pth`` cannot tell (e.g. ``tstride``).
    """
    path = Path(source).expanduser()
    if path.is_dir() and (path / OWN_CONFIG).is_file():
        pretrained = _load_own(path)
    elif path.is_dir() and (path / "config.json").is_file():
        pretrained = _load_hf_dir(path, str(source))
    elif path.is_file() and path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        pretrained = _load_original_pth(path, overrides)
    elif path.exists():
        raise CheckpointError(f"{path}: not a checkpoint this tool knows (expected a directory with config.json "
                              f"or {OWN_CONFIG}, or an AST .pth file)")
    elif is_hub_id(source):
        pretrained = _load_hf_dir(hub_folder(str(source)), str(source))
    else:
        raise CheckpointError(f"{source}: checkpoint not found; give an existing path or a hub id "
                              f"such as {AUDIOSET_HUB_ID}")
    if max_length is not None and max_length != pretrained.model.config.max_length:
        pretrained.model.set_max_length(max_length)
    return pretrained
