"""Loading AST weights from every format we meet, through explicit, checked key maps.

Sources: a Hugging Face directory or hub id (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``), the AST authors' original ``.pth`` (timm keys under ``module.v.``),
and this tool's own saved models (``softmoa.json`` + ``model.safetensors``); one of these may
hold PETL modules (a standalone export of an adapter run), which its ``method`` rebuilds.
Untrusted files load only through safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ... import __version__
from ..errors import CheckpointError
from ..fsutil import atomic_save_tensors, atomic_write_json
from ..hub import is_hub_id
from ..registry import Registry
from .ast import AST, ASTConfig

AUDIOSET_HUB_ID = "MIT/ast-finetuned-audioset-10-10-0.4593"
OWN_CONFIG = "softmoa.json"
OWN_WEIGHTS = "model.safetensors"
# How a saved model's recorded PETL modules are put back into a plain AST: ``rebuild(model,
# method) -> model`` under the name "method". That knowledge sits in layers above this one (they
# import models), so it arrives through the entry-point group, as plugins do.
MODEL_PARTS: Registry = Registry("model part", "softmoa.model_parts")


@dataclass
class Pretrained:
    """A loaded backbone with what the checkpoint says about its outputs. ``method``: the config
    (as JSON) of the PETL modules injected into ``model``, None for a plain AST."""

    model: AST
    labels: list[str]
    multi_label: bool
    source: str
    extra: dict = field(default_factory=dict)
    method: dict | None = None


# ---------------------------------------------------------------- key maps (ours <- theirs)

def _hf_key_map(depth: int, legacy: bool) -> dict[str, str]:
    """Our names -> transformers' names (legacy ``encoder.layer`` layout or the v5 one)."""
    keys = {
        "patch_embed.weight": "embeddings.patch_embeddings.projection.weight",
        "patch_embed.bias": "embeddings.patch_embeddings.projection.bias",
        "cls_token": "embeddings.cls_token",
        "dist_token": "embeddings.distillation_token",
        "pos_embed": "embeddings.position_embeddings",
        "norm.weight": "layernorm.weight",
        "norm.bias": "layernorm.bias",
    }
    if legacy:
        layer = {"norm1": "layernorm_before", "attn.q": "attention.attention.query",
                 "attn.k": "attention.attention.key", "attn.v": "attention.attention.value",
                 "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
                 "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
        prefix = "encoder.layer"
    else:
        layer = {"norm1": "layernorm_before", "attn.q": "attention.q_proj", "attn.k": "attention.k_proj",
                 "attn.v": "attention.v_proj", "attn.proj": "attention.o_proj", "norm2": "layernorm_after",
                 "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
        prefix = "layers"
    for i in range(depth):
        for ours, theirs in layer.items():
            for kind in ("weight", "bias"):
                keys[f"blocks.{i}.{ours}.{kind}"] = f"{prefix}.{i}.{theirs}.{kind}"
    return {ours: f"audio_spectrogram_transformer.{theirs}" for ours, theirs in keys.items()}


HF_HEAD = {"head.norm.weight": "classifier.layernorm.weight", "head.norm.bias": "classifier.layernorm.bias",
           "head.fc.weight": "classifier.dense.weight", "head.fc.bias": "classifier.dense.bias"}


def _apply_key_map(model: AST, state: dict[str, torch.Tensor], key_map: dict[str, str], source: str) -> None:
    """Copy ``state[theirs]`` into ``model[ours]``; fail listing every missing, unexpected or
    mis-shaped tensor."""
    ours = model.state_dict()
    missing = [theirs for theirs in key_map.values() if theirs not in state]
    unexpected = sorted(set(state) - set(key_map.values()))
    shapes = [f"{theirs} {tuple(state[theirs].shape)} vs {tuple(ours[name].shape)}"
              for name, theirs in key_map.items()
              if theirs in state and tuple(state[theirs].shape) != tuple(ours[name].shape)]
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
            problems.append(f"{len(items)} {title} tensor(s): {shown}")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the AST model ({'; '.join(problems)})")
    with torch.no_grad():
        for name, theirs in key_map.items():
            ours[name].copy_(state[theirs].to(ours[name].dtype))


# ---------------------------------------------------------------- formats

def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read weights ({str(error).splitlines()[0][:200]}); "
                              "is it a complete safetensors or PyTorch file?") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return state


def _load_hf_dir(directory: Path, source: str) -> Pretrained:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{directory / 'config.json'}: unreadable config ({error})") from None
    weights = next((directory / name for name in ("model.safetensors", "pytorch_model.bin")
                    if (directory / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin beside config.json")
    state = _read_state(weights)
    id2label = config.get("id2label") or {}
    labels = [id2label.get(str(i), id2label.get(i, f"LABEL_{i}")) for i in range(len(id2label))]
    has_head = "classifier.dense.weight" in state
    num_classes = state["classifier.dense.weight"].shape[0] if has_head else max(len(labels), 1)
    ast_config = ASTConfig(
        dim=config.get("hidden_size", 768), depth=config.get("num_hidden_layers", 12),
        heads=config.get("num_attention_heads", 12), mlp_dim=config.get("intermediate_size", 3072),
        patch_size=config.get("patch_size", 16), fstride=config.get("frequency_stride", 10),
        tstride=config.get("time_stride", 10), num_mel_bins=config.get("num_mel_bins", 128),
        max_length=config.get("max_length", 1024), num_classes=num_classes, pool="cls_dist", head_norm=True,
        eps=config.get("layer_norm_eps", 1e-12), qkv_bias=config.get("qkv_bias", True))
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{directory}: hidden_act {config['hidden_act']!r} is not supported (only gelu)")
    # An ASTModel saved alone has no "audio_spectrogram_transformer." prefix.
    if not any(k.startswith("audio_spectrogram_transformer.") for k in state):
        state = {f"audio_spectrogram_transformer.{k}": v for k, v in state.items()}
    model = AST(ast_config)
    legacy = any(".encoder.layer." in k for k in state)
    key_map = _hf_key_map(ast_config.depth, legacy) | (HF_HEAD if has_head else {})
    _apply_key_map(model, state, key_map, str(weights))
    problem = config.get("problem_type")
    multi_label = problem == "multi_label_classification" or (problem is None and num_classes == 527)
    return Pretrained(model, labels if len(labels) == num_classes else [f"LABEL_{i}" for i in range(num_classes)],
                      multi_label, source, {"has_head": has_head})


def _load_original_pth(path: Path, overrides: dict) -> Pretrained:
    """The AST authors' checkpoints: timm DeiT keys under ``module.v.``, head ``module.mlp_head``."""
    state = {re.sub(r"^module\.", "", k): v for k, v in _read_state(path).items()}
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
    _apply_key_map(model, state, key_map, str(path))
    labels = [f"LABEL_{i}" for i in range(ast_config.num_classes)]
    return Pretrained(model, labels, ast_config.num_classes == 527, str(path), {"has_head": has_head})


def _load_own(directory: Path) -> Pretrained:
    meta = json.loads((directory / OWN_CONFIG).read_text())
    if meta.get("format") != "softmoa-model":
        raise CheckpointError(f"{directory / OWN_CONFIG}: not a softmoa model (format {meta.get('format')!r})")
    model = AST(ASTConfig(**meta["ast"]))
    if meta.get("method") is not None:
        model = MODEL_PARTS.get("method")(model, meta["method"])
    state = _read_state(directory / OWN_WEIGHTS)
    _apply_key_map(model, state, {k: k for k in model.state_dict()}, str(directory / OWN_WEIGHTS))
    return Pretrained(model, meta["labels"], meta.get("multi_label", False), str(directory), meta.get("extra", {}),
                      meta.get("method"))


def save_model(pretrained: Pretrained, directory: str | Path) -> Path:
    """Save an AST in this tool's format, with the config of its PETL modules when it has some
    (``pretrained.method``); each file is written atomically."""
    directory = Path(directory)
    atomic_save_tensors(directory / OWN_WEIGHTS, pretrained.model.state_dict())
    atomic_write_json(directory / OWN_CONFIG, {
        "format": "softmoa-model", "version": __version__, "ast": pretrained.model.config.to_dict(),
        "labels": list(pretrained.labels), "multi_label": pretrained.multi_label, "extra": pretrained.extra,
        **({"method": pretrained.method} if pretrained.method is not None else {})})
    return directory


def _download_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin"]))
    except Exception as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{repo_id}: cannot get this checkpoint from the Hugging Face hub or its cache ({reason}); "
            "pass a local directory or file with --checkpoint, or run `softmoa download ast-audioset` "
            "on a machine online") from None


def load_pretrained(source: str | Path, max_length: int | None = None, **overrides) -> Pretrained:
    """Load an AST from a path (HF directory, original ``.pth``, softmoa model) or a hub id.

    ``max_length`` adapts the position embeddings to another input length (frames);
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
        pretrained = _load_hf_dir(_download_hub(str(source)), str(source))
    else:
        raise CheckpointError(f"{source}: checkpoint not found; give an existing path or a hub id "
                              f"such as {AUDIOSET_HUB_ID}")
    if max_length is not None and max_length != pretrained.model.config.max_length:
        pretrained.model.set_max_length(max_length)
    return pretrained
