"""transformers' AST checkpoints (``ASTModel``, ``ASTForAudioClassification``) -> our AST, through
an explicit key map (the legacy ``encoder.layer`` layout and the v5 one)."""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .ast import AST, ASTConfig
from .checkpoint import apply_key_map, hf_labels

PREFIX = "audio_spectrogram_transformer."
HEAD = {"head.norm.weight": "classifier.layernorm.weight", "head.norm.bias": "classifier.layernorm.bias",
        "head.fc.weight": "classifier.dense.weight", "head.fc.bias": "classifier.dense.bias"}


def hf_key_map(depth: int, legacy: bool) -> dict[str, str]:
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
    return {ours: f"{PREFIX}{theirs}" for ours, theirs in keys.items()}


def load_hf_ast(config: dict, state: dict[str, torch.Tensor], source: str) -> tuple[AST, bool]:
    """An AST with the weights of a transformers AST folder's ``config.json`` and ``state``; and
    whether the checkpoint has a classifier head."""
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{source}: hidden_act {config['hidden_act']!r} is not supported (only gelu)")
    has_head = "classifier.dense.weight" in state
    num_classes = state["classifier.dense.weight"].shape[0] if has_head else max(len(hf_labels(config)), 1)
    ast_config = ASTConfig(
        dim=config.get("hidden_size", 768), depth=config.get("num_hidden_layers", 12),
        heads=config.get("num_attention_heads", 12), mlp_dim=config.get("intermediate_size", 3072),
        patch_size=config.get("patch_size", 16), fstride=config.get("frequency_stride", 10),
        tstride=config.get("time_stride", 10), num_mel_bins=config.get("num_mel_bins", 128),
        max_length=config.get("max_length", 1024), num_classes=num_classes, pool="cls_dist", head_norm=True,
        eps=config.get("layer_norm_eps", 1e-12), qkv_bias=config.get("qkv_bias", True))
    # An ASTModel saved alone has no "audio_spectrogram_transformer." prefix.
    if not any(k.startswith(PREFIX) for k in state):
        state = {f"{PREFIX}{k}": v for k, v in state.items()}
    model = AST(ast_config)
    legacy = any(".encoder.layer." in k for k in state)
    apply_key_map(model, state, hf_key_map(ast_config.depth, legacy) | (HEAD if has_head else {}), source)
    return model, has_head
