"""wav2vec2, HuBERT and WavLM agree with transformers: hidden states of base-style (post-LN, group
norm) and large-style (pre-LN, layer norm) encoders, logits of the sequence classifiers with and
without the weighted layer sum, the waveform front end on real speech; pre-training and CTC
folders load their encoder, both weight-norm key layouts load, and a stray tensor, an unknown
model_type or an unsupported option is one clear line."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_meaningful, largest_difference, scaled_hf_model
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.data.frontends import waveform_window
from softmoa_cli.engine.errors import CheckpointError
from softmoa_cli.engine.models.pretrained import load_pretrained
from softmoa_cli.engine.petl.build import build_model

transformers = pytest.importorskip("transformers")

FRAMES = 100  # windows of 1 s: 16,000 samples, 49 tokens
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            conv_dim=(8,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12, num_labels=5,
            classifier_proj_size=24, id2label={i: f"class{i}" for i in range(5)})
BASE = dict(feat_extract_norm="group", do_stable_layer_norm=False)
LARGE = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
CASES = [("Wav2Vec2", BASE), ("Wav2Vec2", LARGE), ("Hubert", BASE),
         ("Hubert", LARGE | {"feat_proj_layer_norm": False}), ("WavLM", BASE), ("WavLM", LARGE)]
IDS = ["wav2vec2-base", "wav2vec2-large", "hubert-base", "hubert-large", "wavlm-base", "wavlm-large"]


def hf_folder(folder, family: str, head: str, **config):
    """A tiny random transformers ``{family}{head}`` (e.g. ``HubertModel``), weights scaled up,
    saved: (model, folder)."""
    hf_config = getattr(transformers, f"{family}Config")(**(TINY | config))
    return scaled_hf_model(getattr(transformers, f"{family}{head}"), hf_config, folder)


def waves(batch: int = 2) -> torch.Tensor:
    """Waveforms ``[batch, FRAMES * 160]`` that differ in kind, so pooled outputs differ too: a
    tone of 150 Hz more per example, each over its own noise."""
    t = torch.arange(FRAMES * 160) / 16_000
    noise = 0.1 * torch.randn(batch, t.numel(), generator=torch.Generator().manual_seed(1))
    return torch.stack([torch.sin(2 * torch.pi * 150 * (k + 1) * t) for k in range(batch)]) + noise


@pytest.mark.parametrize("family, style", CASES, ids=IDS)
def test_encoder_hidden_states_match_transformers(tmp_path, family, style):
    hf, folder = hf_folder(tmp_path / "hf", family, "Model", **style)
    ours = load_pretrained(folder, max_length=FRAMES).model.eval()
    x = waves()
    with torch.no_grad():
        expected = hf(x, output_hidden_states=True)
        features, blocks = ours.forward_intermediates(x)
        embedded = ours.embed(x)
    assert ours.family == family.lower() and ours.num_tokens() == expected.last_hidden_state.shape[1] == 49
    assert_meaningful(expected.last_hidden_state)
    assert largest_difference(features, expected.last_hidden_state) <= 1e-4
    assert largest_difference(embedded, expected.hidden_states[0]) <= 1e-4
    for i, block in enumerate(blocks):
        assert largest_difference(block, expected.hidden_states[i + 1]) <= 1e-4, i


@pytest.mark.parametrize("weighted", [False, True], ids=["last-layer", "weighted-layer-sum"])
@pytest.mark.parametrize("family, style", CASES, ids=IDS)
def test_sequence_classifier_logits_match_transformers(tmp_path, family, style, weighted):
    hf, folder = hf_folder(tmp_path / "hf", family, "ForSequenceClassification", use_weighted_layer_sum=weighted,
                           **style)
    pretrained = load_pretrained(folder)
    model = pretrained.model.eval()
    assert pretrained.labels == [f"class{i}" for i in range(5)] and pretrained.extra["has_head"]
    assert model.config.head_proj == 24 and model.config.weighted_layer_sum == weighted
    x = waves(3)
    with torch.no_grad():
        expected = hf(x).logits
        got = model(x)
    assert_meaningful(expected)
    assert largest_difference(got, expected) <= 1e-4
    if weighted and model.config.pre_norm:  # the comparison sees which last state the sum takes
        model.normed_last_state = True  # (transformers': the last block's own output)
        with torch.no_grad():
            assert largest_difference(model(x), expected) > 1e-2


@pytest.mark.parametrize("family, head", [("Wav2Vec2", "ForPreTraining"), ("Wav2Vec2", "ForCTC"),
                                          ("Hubert", "ForCTC"), ("WavLM", "ForCTC")])
def test_pretraining_and_ctc_folders_give_their_encoder(tmp_path, family, head):
    small_quantizer = dict(codevector_dim=16, proj_codevector_dim=16, num_codevectors_per_group=8)
    hf, folder = hf_folder(tmp_path / "hf", family, head, **(small_quantizer if head == "ForPreTraining" else {}))
    pretrained = load_pretrained(folder)
    assert not pretrained.extra["has_head"]
    x = waves()
    with torch.no_grad():
        expected = hf.base_model(x).last_hidden_state
        got = pretrained.model.eval().forward_features(x)
    assert largest_difference(got, expected) <= 1e-4


def rename_weight_norm(folder, old: tuple[str, str], new: tuple[str, str]) -> None:
    """Rewrite a saved folder's positional-conv weight-norm tensors from names ``old`` to ``new``."""
    from safetensors.torch import load_file, save_file

    path = str(folder / "model.safetensors")
    state = load_file(path)
    for before, after in zip(old, new):
        state[f"encoder.pos_conv_embed.conv.{after}"] = state.pop(f"encoder.pos_conv_embed.conv.{before}")
    save_file(state, path, metadata={"format": "pt"})


def test_both_weight_norm_key_layouts_load_the_same_weight(tmp_path):
    _, folder = hf_folder(tmp_path / "hf", "Wav2Vec2", "Model")
    newer = load_pretrained(folder).model.pos_conv.conv.weight.clone()
    rename_weight_norm(folder, ("parametrizations.weight.original0", "parametrizations.weight.original1"),
                       ("weight_g", "weight_v"))
    assert torch.equal(load_pretrained(folder).model.pos_conv.conv.weight, newer)
    assert newer.abs().max() > 0.01


def test_an_unexpected_tensor_is_refused_in_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = hf_folder(tmp_path / "hf", "WavLM", "ForSequenceClassification")
    state = load_file(str(folder / "model.safetensors"))
    save_file(state | {"wavlm.encoder.extra.weight": torch.zeros(2), "adapter.bias": torch.zeros(2)},
              str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as error:
        load_pretrained(folder)
    message = str(error.value)
    assert "\n" not in message and "2 unexpected tensor(s): adapter.bias, encoder.extra.weight" in message


def test_an_unknown_model_type_is_one_line_naming_the_supported_ones(tmp_path):
    _, folder = hf_folder(tmp_path / "hf", "Wav2Vec2", "Model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "data2vec-audio"}))
    with pytest.raises(CheckpointError) as error:
        load_pretrained(folder)
    message = str(error.value)
    assert "\n" not in message and "model_type 'data2vec-audio'" in message
    assert "audio-spectrogram-transformer, whisper, wav2vec2, hubert, wavlm" in message


def test_an_unsupported_option_is_one_line(tmp_path):
    _, folder = hf_folder(tmp_path / "hf", "Hubert", "Model", conv_pos_batch_norm=True)
    with pytest.raises(CheckpointError, match="conv_pos_batch_norm: true is not supported"):
        load_pretrained(folder)


def test_the_convolution_stack_stays_frozen_in_full_fine_tuning(tmp_path):
    _, folder = hf_folder(tmp_path / "hf", "Wav2Vec2", "Model")
    model = build_model(load_pretrained(folder), "full", num_classes=3).train()
    convs = {name: p.detach().clone() for name, p in model.named_parameters() if name.startswith("features.")}
    assert convs and not any(p.requires_grad for n, p in model.named_parameters() if n in convs)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in convs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    F.cross_entropy(model(waves()), torch.tensor([0, 2])).backward()
    optimizer.step()
    assert all(torch.equal(p, convs[n]) for n, p in model.named_parameters() if n in convs)


def test_preprocessor_config_gives_the_front_end(tmp_path):
    _, folder = hf_folder(tmp_path / "hf", "Wav2Vec2", "Model")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    features = FeatureConfig(**load_pretrained(folder).extra["features"])
    assert (features.kind, features.sample_rate, features.normalize) == ("waveform", 16_000, True)


def chirp(seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * 16_000)) / 16_000
    return 0.3 * torch.sin(2 * torch.pi * (200 + 1500 * t) * t) + 0.05


@pytest.mark.parametrize("normalize", [False, True])
def test_waveform_windows_match_the_extractor(normalize, fsdd_clips):
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=normalize, return_attention_mask=True)
    waves_ = [chirp(1.7)] + [load_mono_16k(path) for path in fsdd_clips]  # FSDD: 8 kHz, resampled
    for wave in waves_:
        for frames in (wave.numel() // 320, wave.numel() // 160 + 37):  # cut, and padded
            expected = extractor(wave.numpy(), sampling_rate=16_000, padding="max_length", max_length=frames * 160,
                                 truncation=True, return_tensors="pt").input_values[0]
            got = waveform_window(wave, frames, normalize)
            assert expected.abs().max() > 0.01  # FSDD's quietest clip peaks near 0.03
            assert largest_difference(got, expected) <= 1e-4
