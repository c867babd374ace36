"""One windowing mechanism for every front end: Whisper's log-mels and 16 kHz waveform windows
follow the window rule in frames of 10 ms as the AST's fbank does; the cache key holds the whole
feature config; a long waveform clip's training crop is its own samples; SpecAugment masks a
waveform in time only; a folder without a preprocessor config takes its family's defaults."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import scaled_hf_model
from softmoa_cli.engine.data.augment import spec_augment
from softmoa_cli.engine.data.cache import cache_key
from softmoa_cli.engine.data.features import FeatureConfig, clip_frames, frame_count, window_starts, windows
from softmoa_cli.engine.data.frontends import waveform_window, zero_mean_unit_variance
from softmoa_cli.engine.data.spec import make_clips
from softmoa_cli.engine.data.table import FeatureTable
from softmoa_cli.engine.models.pretrained import front_end_of

WHISPER = FeatureConfig(kind="whisper", num_mel_bins=16, max_length=100)
WAVEFORM = FeatureConfig(kind="waveform", normalize=True, max_length=100)


def tone(seconds: float, seed: int = 0) -> torch.Tensor:
    """A rising tone over noise, 16 kHz."""
    t = torch.arange(int(seconds * 16_000)) / 16_000
    noise = 0.05 * torch.randn(t.numel(), generator=torch.Generator().manual_seed(seed))
    return 0.3 * torch.sin(2 * math.pi * (200 + 800 * t) * t) + noise


def test_the_cache_key_holds_the_whole_feature_config(tmp_path):
    clips = make_clips([("a.wav", "x", "train", 0), ("b.wav", "y", "test", 0)])
    configs = [FeatureConfig(max_length=100), replace(WHISPER, num_mel_bins=80), WHISPER, WAVEFORM,
               replace(WAVEFORM, normalize=False), replace(WAVEFORM, max_seconds=30.0)]
    keys = [cache_key(tmp_path, clips, config) for config in configs]
    assert len(set(keys)) == len(keys) and all(key.startswith("L100-") for key in keys)


def test_waveform_windows_follow_the_window_rule_in_frames():
    wave = tone(2.2345)  # 35,752 samples: 224 frames of 160, the last one partial
    frames = frame_count(wave.numel(), WAVEFORM)
    assert frames == 224 and window_starts(frames, 100) == [0, 100, 124]
    got = windows(wave, WAVEFORM)
    assert got.shape == (3, 16_000) and got.dtype == torch.float16
    for window, start in zip(got, (0, 100, 124)):  # each window its own samples, normalised alone
        samples = wave[start * 160:(start + 100) * 160]
        expected = torch.nn.functional.pad(zero_mean_unit_variance(samples), (0, 16_000 - samples.numel()))
        assert (window.float() - expected).abs().max() <= 2e-3  # float16
    short = tone(0.4)
    assert torch.equal(windows(short, WAVEFORM)[0], waveform_window(short, 100, True).half())  # zero-padded after


def test_whisper_windows_are_the_extractors_frames_padded_with_silence():
    transformers = pytest.importorskip("transformers")
    extractor = transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=1)  # 100 frames
    for wave in (tone(0.43), tone(0.999)):
        expected = extractor(wave.numpy(), sampling_rate=16_000, return_tensors="pt").input_features[0].T  # [100, 16]
        got = windows(wave, WHISPER)
        assert got.shape == (1, 100, 16) and (got[0].float() - expected).abs().max() <= 2e-3  # float16
    long = tone(2.5)
    assert clip_frames(long, WHISPER).shape == (250, 16) and windows(long, WHISPER).shape == (3, 100, 16)


def test_a_long_waveform_clips_training_crop_is_its_own_samples():
    config = replace(WAVEFORM, normalize=False)
    wave = tone(2.5)
    stored = windows(wave, config).numpy()  # [3, 16000], as a cache holds them
    table = FeatureTable("t", stored[:1], np.array([0]), ["a"], np.array(["train"]), np.array([0]), config,
                         windows=np.array([3]), extra=stored[1:], frames=np.array([frame_count(wave.numel(), config)]))
    generator = torch.Generator().manual_seed(0)
    start = int(table.crop_starts(np.array([0]), generator)[0])
    assert 0 < start <= 150
    x, _ = table.crop_batch(np.array([0]), torch.Generator().manual_seed(0))
    assert x.shape == (1, 16_000)
    assert torch.equal(x[0], wave[start * 160:(start + 100) * 160].half().float())


def test_spec_augment_masks_a_waveform_in_time_only():
    x = torch.ones(4, 100 * 160)
    masked = spec_augment(x, freq_mask=20, time_mask=30, generator=torch.Generator().manual_seed(1))
    assert masked.shape == x.shape
    for row in masked.view(4, 100, 160):
        frames = (row == 0).all(dim=1)  # whole frames of 160 samples, one run of them
        assert torch.equal(row == 0, frames[:, None].expand(-1, 160)) and frames.sum() <= 30
        if frames.any():
            where = torch.nonzero(frames).flatten()
            assert where[-1] - where[0] + 1 == len(where)
    assert torch.equal(spec_augment(x, 20, 0, torch.Generator().manual_seed(1)), x)  # no frequency axis to mask


def test_a_folder_without_a_preprocessor_config_takes_its_familys_defaults(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.WhisperConfig(num_mel_bins=16, d_model=32, encoder_layers=1, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                        decoder_ffn_dim=32, max_source_positions=50, vocab_size=64, pad_token_id=0,
                                        bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    _, folder = scaled_hf_model(transformers.WhisperModel, config, tmp_path / "whisper")
    assert FeatureConfig(**front_end_of(folder)).kind == "whisper" and front_end_of(folder)["num_mel_bins"] == 16
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4, vocab_size=12)
    _, folder = scaled_hf_model(transformers.Wav2Vec2Model, config, tmp_path / "wav2vec2")
    assert front_end_of(folder) == {"sample_rate": 16_000, "kind": "waveform", "normalize": True}  # the extractor's
