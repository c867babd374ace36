"""Whisper's encoder and its front end agree with transformers' Whisper: hidden states, logits of
the audio classifier (with and without the weighted layer sum), log-mels on real speech; and the
encoder runs clips shorter than 30 s, with one clear line past its positions."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import assert_meaningful, largest_difference, scaled_hf_model
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.data.frontends import whisper_log_mel
from softmoa_cli.engine.errors import SoftmoaError
from softmoa_cli.engine.models.pretrained import load_pretrained

transformers = pytest.importorskip("transformers")

MELS, POSITIONS = 16, 50  # transformers' encoder takes exactly 2 * POSITIONS frames
TINY = dict(num_mel_bins=MELS, d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
            decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, max_source_positions=POSITIONS,
            max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=3, suppress_tokens=[], begin_suppress_tokens=[], num_labels=5, classifier_proj_size=24,
            id2label={i: f"class{i}" for i in range(5)})


def whisper_folder(folder, model_class: str, **changes):
    """A tiny random transformers Whisper of ``model_class``, weights scaled up, saved: (model, folder)."""
    return scaled_hf_model(getattr(transformers, model_class), transformers.WhisperConfig(**(TINY | changes)), folder)


def log_mels(batch: int = 2, frames: int = 2 * POSITIONS) -> torch.Tensor:
    """Random log-mels ``[batch, frames, MELS]``, each example with its own spectral tilt, so
    pooled outputs differ too."""
    tilt = torch.linspace(-1, 1, MELS) * torch.arange(batch)[:, None, None]  # [batch, 1, MELS]
    return torch.randn(batch, frames, MELS, generator=torch.Generator().manual_seed(1)) + tilt


@pytest.mark.parametrize("model_class", ["WhisperModel", "WhisperForConditionalGeneration"])
def test_encoder_hidden_states_match_transformers(tmp_path, model_class):
    hf, folder = whisper_folder(tmp_path / "hf", model_class)
    ours = load_pretrained(folder).model.eval()
    x = log_mels()
    with torch.no_grad():
        expected = hf.get_encoder()(x.transpose(1, 2), output_hidden_states=True)
        features, blocks = ours.forward_intermediates(x)
        embedded = ours.embed(x)
    reference = expected.last_hidden_state
    assert_meaningful(reference)
    assert largest_difference(features, reference) <= 1e-4
    assert largest_difference(embedded, expected.hidden_states[0]) <= 1e-4
    for i, block in enumerate(blocks[:-1]):  # transformers' last hidden state is after the final norm
        assert largest_difference(block, expected.hidden_states[i + 1]) <= 1e-4, i


@pytest.mark.parametrize("weighted", [False, True], ids=["last-layer", "weighted-layer-sum"])
def test_audio_classifier_logits_match_transformers(tmp_path, weighted):
    hf, folder = whisper_folder(tmp_path / "hf", "WhisperForAudioClassification", use_weighted_layer_sum=weighted)
    pretrained = load_pretrained(folder)
    model = pretrained.model.eval()
    assert pretrained.labels == [f"class{i}" for i in range(5)] and pretrained.extra["has_head"]
    assert model.config.head_proj == 24 and model.config.weighted_layer_sum == weighted
    x = log_mels(3)
    with torch.no_grad():
        expected = hf(x.transpose(1, 2)).logits
        got = model(x)
    assert_meaningful(expected)
    assert largest_difference(got, expected) <= 1e-4
    if weighted:  # the comparison sees which last state the sum takes (transformers': after the final norm)
        model.normed_last_state = False
        with torch.no_grad():
            assert largest_difference(model(x), expected) > 1e-2


def test_shorter_windows_run_on_the_first_positions(tmp_path):
    _, folder = whisper_folder(tmp_path / "hf", "WhisperModel")
    model = load_pretrained(folder, max_length=60).model.eval()
    assert model.input_shape(60) == (60, MELS) and model.num_tokens() == 30
    x = log_mels(frames=60)
    with torch.no_grad():
        stem = torch.nn.functional.gelu(model.conv2(torch.nn.functional.gelu(model.conv1(x.transpose(1, 2)))))
        assert torch.equal(model.embed(x), stem.transpose(1, 2) + model.pos_embed[:30])
        assert model.forward_features(x).shape == (2, 30, 32)


def test_max_length_beyond_the_positions_is_one_clear_line(tmp_path):
    _, folder = whisper_folder(tmp_path / "hf", "WhisperModel")
    with pytest.raises(SoftmoaError) as error:
        load_pretrained(folder, max_length=2 * POSITIONS + 2)
    message = str(error.value)
    assert "\n" not in message and f"{POSITIONS} positions" in message and f"at most {2 * POSITIONS} frames" in message


def test_decoder_tensors_are_left_out_but_others_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = whisper_folder(tmp_path / "hf", "WhisperModel")
    state = load_file(str(folder / "model.safetensors"))
    save_file(state | {"encoder.extra.weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    with pytest.raises(SoftmoaError) as error:
        load_pretrained(folder)
    assert "1 unexpected tensor(s): encoder.extra.weight" in str(error.value) and "\n" not in str(error.value)


def chirp(seconds: float) -> torch.Tensor:
    """A rising tone over faint noise, 16 kHz: speech-like energy across the mel bands."""
    t = torch.arange(int(seconds * 16_000)) / 16_000
    noise = 0.01 * torch.randn(t.numel(), generator=torch.Generator().manual_seed(0))
    return 0.3 * torch.sin(2 * math.pi * (200 + 1500 * t) * t) + noise


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mels_match_the_extractor(n_mels, fsdd_clips):
    """Tolerance 1e-3 (log10 units / 4): both run float32 STFTs, and a log of a tiny mel energy
    amplifies their rounding; the largest difference seen on FSDD is 1.3e-5."""
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    waves = [chirp(1.234)] + [load_mono_16k(path) for path in fsdd_clips]  # FSDD: 8 kHz, resampled
    for wave in waves:
        expected = extractor(wave.numpy(), sampling_rate=16_000, return_tensors="pt").input_features[0].T  # [3000, mels]
        got = whisper_log_mel(wave, n_mels)
        assert got.shape == (wave.numel() // 160, n_mels)
        assert expected[:len(got)].std() > 0.1  # real structure, not a floor
        assert largest_difference(got, expected[:len(got)]) <= 1e-3


def test_preprocessor_config_gives_the_front_end(tmp_path):
    _, folder = whisper_folder(tmp_path / "hf", "WhisperModel")
    transformers.WhisperFeatureExtractor(feature_size=128).save_pretrained(folder)
    features = FeatureConfig(**load_pretrained(folder).extra["features"])
    assert (features.kind, features.num_mel_bins, features.max_length) == ("whisper", 128, 3000)
