"""transformers' Whisper checkpoints -> our Whisper encoder, through an explicit module table.

``WhisperModel`` and ``WhisperForConditionalGeneration`` folders give the encoder (their decoder
and ``proj_out`` are left out on purpose); ``WhisperForAudioClassification`` folders give the
encoder with its head (``projector``, ``classifier`` and, with ``use_weighted_layer_sum``, the
``layer_weights``). Any other tensor is refused.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .checkpoint import apply_key_map, dropped, hf_labels, renamed_key_map, without_prefix
from .whisper import Whisper, WhisperConfig

UNUSED = ("decoder", "proj_out")  # the text decoder and its output projection
MODULES = {
    "conv1": "encoder.conv1", "conv2": "encoder.conv2", "pos_embed": "encoder.embed_positions.weight",
    "blocks.#.norm1": "encoder.layers.#.self_attn_layer_norm",
    "blocks.#.attn.q": "encoder.layers.#.self_attn.q_proj", "blocks.#.attn.k": "encoder.layers.#.self_attn.k_proj",
    "blocks.#.attn.v": "encoder.layers.#.self_attn.v_proj", "blocks.#.attn.proj": "encoder.layers.#.self_attn.out_proj",
    "blocks.#.norm2": "encoder.layers.#.final_layer_norm",
    "blocks.#.mlp.fc1": "encoder.layers.#.fc1", "blocks.#.mlp.fc2": "encoder.layers.#.fc2",
    "norm": "encoder.layer_norm", "head.proj": "projector", "head.fc": "classifier", "layer_weights": "layer_weights",
}


def whisper_config(config: dict, state: dict[str, torch.Tensor]) -> WhisperConfig:
    """Our config from a transformers Whisper ``config.json`` (its defaults where a key is absent)
    and the head the weights hold."""
    has_head = "classifier.weight" in state
    return WhisperConfig(
        dim=config.get("d_model", 384), depth=config.get("encoder_layers", 4),
        heads=config.get("encoder_attention_heads", 6), mlp_dim=config.get("encoder_ffn_dim", 1536),
        num_mel_bins=config.get("num_mel_bins", 80), positions=config.get("max_source_positions", 1500),
        max_length=2 * config.get("max_source_positions", 1500),
        num_classes=state["classifier.weight"].shape[0] if has_head else max(len(hf_labels(config)), 1),
        head_proj=state["projector.weight"].shape[0] if "projector.weight" in state else None,
        weighted_layer_sum=has_head and bool(config.get("use_weighted_layer_sum", False)))


def load_hf_whisper(config: dict, state: dict[str, torch.Tensor], source: str) -> tuple[Whisper, bool]:
    """Our Whisper encoder with a transformers Whisper folder's weights; and whether they hold a
    classifier head."""
    activation = config.get("activation_function", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"{source}: activation_function {activation!r} is not supported (only gelu)")
    state = dropped(without_prefix(state, "model."), UNUSED)  # ForConditionalGeneration nests the model
    model = Whisper(whisper_config(config, state))
    has_head = "classifier.weight" in state
    apply_key_map(model, state, renamed_key_map(model, MODULES, has_head), source)
    return model, has_head
