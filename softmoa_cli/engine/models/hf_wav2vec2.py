"""transformers' wav2vec2, HuBERT and WavLM checkpoints -> our waveform encoders, through one
explicit module table.

Folders of ``*Model``, ``*ForCTC``, ``Wav2Vec2ForPreTraining`` and ``*ForSequenceClassification``
load; what an encoder never runs is left out on purpose (the pre-training quantizer and its
projections, the CTC ``lm_head``, the mask embedding), the sequence classifiers keep their head
(``projector``, ``classifier``, ``layer_weights``), and any other tensor is refused. The
positional convolution's weight norm (``weight_g``/``weight_v``, or the newer
``parametrizations.weight.original0/1``) is folded into one plain weight.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from .checkpoint import apply_key_map, dropped, hf_labels, renamed_key_map, without_prefix
from .wav2vec2 import BASE_CONV, HuBERT, HubertConfig, Wav2Vec2, Wav2Vec2Config, WavLM, WavLMConfig

UNUSED = ("quantizer", "project_q", "project_hid", "lm_head", "masked_spec_embed")
POS_CONV = "encoder.pos_conv_embed.conv"
NORM_PAIRS = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))
MODULES = {
    "features.#.conv": "feature_extractor.conv_layers.#.conv",
    "features.#.norm": "feature_extractor.conv_layers.#.layer_norm",
    "feature_norm": "feature_projection.layer_norm", "feature_proj": "feature_projection.projection",
    "pos_conv.conv": POS_CONV, "norm_pre": "encoder.layer_norm", "norm": "encoder.layer_norm",
    "blocks.#.attn.q": "encoder.layers.#.attention.q_proj", "blocks.#.attn.k": "encoder.layers.#.attention.k_proj",
    "blocks.#.attn.v": "encoder.layers.#.attention.v_proj", "blocks.#.attn.proj": "encoder.layers.#.attention.out_proj",
    "blocks.#.attn.gate": "encoder.layers.#.attention.gru_rel_pos_linear",
    "blocks.#.attn.gate_scale": "encoder.layers.#.attention.gru_rel_pos_const",
    "rel_pos.embed": "encoder.layers.0.attention.rel_attn_embed",
    "blocks.#.norm1": "encoder.layers.#.layer_norm", "blocks.#.norm2": "encoder.layers.#.final_layer_norm",
    "blocks.#.mlp.fc1": "encoder.layers.#.feed_forward.intermediate_dense",
    "blocks.#.mlp.fc2": "encoder.layers.#.feed_forward.output_dense",
    "head.proj": "projector", "head.fc": "classifier", "layer_weights": "layer_weights",
}
FAMILIES = {"wav2vec2": (Wav2Vec2, Wav2Vec2Config), "hubert": (HuBERT, HubertConfig), "wavlm": (WavLM, WavLMConfig)}


def fold_weight_norm(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """``state`` with the positional convolution's weight norm folded into ``weight``: for each
    kernel tap k, ``weight[..., k] = g[k] * v[..., k] / ||v[..., k]||`` (transformers' ``dim=2``)."""
    state = dict(state)
    for g_name, v_name in NORM_PAIRS:
        if f"{POS_CONV}.{g_name}" in state:
            g, v = state.pop(f"{POS_CONV}.{g_name}"), state.pop(f"{POS_CONV}.{v_name}", None)
            if v is None:
                raise CheckpointError(f"{source}: {POS_CONV}.{g_name} has no {v_name} beside it")
            state[f"{POS_CONV}.weight"] = v * (g / v.norm(dim=(0, 1), keepdim=True))  # [d, d / groups, kernel]
    return state


def unsupported(config: dict) -> str | None:
    """What in a transformers config this encoder does not implement, or None."""
    for key, allowed in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu")):
        if config.get(key, allowed) != allowed:
            return f"{key} {config[key]!r} (only {allowed})"
    for key in ("conv_pos_batch_norm", "add_adapter"):
        if config.get(key):
            return f"{key}: true"
    if config.get("adapter_attn_dim") is not None:
        return "adapter_attn_dim (attention adapters)"
    return None


def wav2vec2_config(family: str, config: dict, state: dict[str, torch.Tensor]) -> Wav2Vec2Config:
    """Our config from a transformers ``config.json`` (its defaults where a key is absent) and the
    head the weights hold."""
    has_head = "classifier.weight" in state
    widths, kernels, strides = zip(*BASE_CONV)
    fields = dict(
        dim=config.get("hidden_size", 768), depth=config.get("num_hidden_layers", 12),
        heads=config.get("num_attention_heads", 12), mlp_dim=config.get("intermediate_size", 3072),
        eps=config.get("layer_norm_eps", 1e-5),
        conv_layers=tuple(zip(config.get("conv_dim", widths), config.get("conv_kernel", kernels),
                              config.get("conv_stride", strides))),
        conv_norm=config.get("feat_extract_norm", "group"), conv_bias=config.get("conv_bias", False),
        feature_norm=config.get("feat_proj_layer_norm", True), pos_kernel=config.get("num_conv_pos_embeddings", 128),
        pos_groups=config.get("num_conv_pos_embedding_groups", 16), pre_norm=config.get("do_stable_layer_norm", False),
        num_classes=state["classifier.weight"].shape[0] if has_head else max(len(hf_labels(config)), 1),
        head_proj=state["projector.weight"].shape[0] if "projector.weight" in state else None,
        weighted_layer_sum=has_head and bool(config.get("use_weighted_layer_sum", False)))
    if family == "wavlm":
        fields |= dict(num_buckets=config.get("num_buckets", 320), max_distance=config.get("max_bucket_distance", 800))
    return FAMILIES[family][1](**fields)


def load_hf_waveform(family: str, config: dict, state: dict[str, torch.Tensor], source: str) -> tuple[Wav2Vec2, bool]:
    """Our ``family`` encoder (wav2vec2, hubert or wavlm) with a transformers folder's weights;
    and whether they hold a classifier head."""
    problem = unsupported(config)
    if problem:
        raise CheckpointError(f"{source}: {problem} is not supported")
    state = fold_weight_norm(dropped(without_prefix(state, f"{family}."), UNUSED), source)
    model = FAMILIES[family][0](wav2vec2_config(family, config, state))
    has_head = "classifier.weight" in state
    apply_key_map(model, state, renamed_key_map(model, MODULES, has_head), source)
    return model, has_head
