"""``predict --checkpoint`` on transformers' speech classifiers scores with the folder's own head
and front end (``preprocessor_config.json``: normalisation, rate, Whisper's window): on real
speech its probabilities are transformers' within 1e-4, given the same input.

Where the inputs differ by design: ours are float16 windows (as the feature cache stores them;
the comparison feeds transformers the float32 extractor output, so the 1e-4 covers that
rounding). A Whisper classifier's window is its extractor's chunk (30 s in the released models,
1 s here), so a shorter clip is padded with silence to it exactly as the extractor pads. A
waveform classifier's extractor names no window: ours is 1024 frames (10.24 s), a shorter clip
is zero-padded to it and the model sees the padding (as transformers' batched inference of a
base model without an attention mask does); transformers scoring one clip alone sees no padding,
which changes its mean-pooled output."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import run_ok, scaled_hf_model
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.models.pretrained import load_pretrained
from softmoa_cli.engine.classifier import Classifier

transformers = pytest.importorskip("transformers")

LABELS = {i: f"class{i}" for i in range(5)}
WHISPER = dict(num_mel_bins=16, d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
               decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, max_source_positions=50,
               max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
               decoder_start_token_id=3, num_labels=5, classifier_proj_size=24, id2label=LABELS)
WAVEFORM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                conv_dim=(8,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12, num_labels=5,
                classifier_proj_size=24, id2label=LABELS)
LARGE = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
CLASSIFIERS = [("Wav2Vec2", {}, True), ("Wav2Vec2", LARGE, True), ("Hubert", {}, False), ("WavLM", {}, True)]
IDS = ["wav2vec2-base", "wav2vec2-large", "hubert-base", "wavlm-base"]


def predicted(clips, folder) -> list[dict]:
    """``softmoa predict CLIPS --checkpoint FOLDER --json``: each clip's probabilities by label."""
    results = json.loads(run_ok("predict", *clips, "--checkpoint", folder, "--json", "-k", 5).stdout)
    return [{p["label"]: p["score"] for p in result["predictions"]} for result in results]


def largest_gap(ours: list[dict], theirs: list[torch.Tensor]) -> float:
    """max |ours - theirs| over clips and labels (``theirs``: probabilities ``[5]`` per clip)."""
    return max(abs(scores[LABELS[i]] - float(p[i])) for scores, p in zip(ours, theirs) for i in range(5))


def test_whisper_audio_classifier_matches_transformers(fsdd_clips, tmp_path):
    model, folder = scaled_hf_model(transformers.WhisperForAudioClassification, transformers.WhisperConfig(**WHISPER),
                                    tmp_path / "whisper")
    extractor = transformers.WhisperFeatureExtractor(feature_size=16, chunk_length=1)  # 100 frames: 2 x 50 positions
    extractor.save_pretrained(folder)
    features = Classifier.from_pretrained(load_pretrained(folder)).features
    assert (features.kind, features.num_mel_bins, features.max_length) == ("whisper", 16, 100)
    theirs = []
    for clip in fsdd_clips:  # all under 1 s: one window, padded with silence as the extractor pads
        inputs = extractor(load_mono_16k(clip).numpy(), sampling_rate=16_000, return_tensors="pt").input_features
        with torch.no_grad():
            theirs.append(model(inputs).logits.softmax(-1)[0])
    assert (theirs[0] - theirs[1]).abs().max() > 0.01  # the scores depend on the clip
    assert largest_gap(predicted(fsdd_clips, folder), theirs) <= 1e-4


@pytest.mark.parametrize("family, style, normalize", CLASSIFIERS, ids=IDS)
def test_sequence_classifiers_match_transformers(family, style, normalize, fsdd_clips, tmp_path):
    hf_config = getattr(transformers, f"{family}Config")(**(WAVEFORM | style))
    model, folder = scaled_hf_model(getattr(transformers, f"{family}ForSequenceClassification"), hf_config,
                                    tmp_path / family)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=normalize)
    extractor.save_pretrained(folder)
    features = Classifier.from_pretrained(load_pretrained(folder)).features
    assert (features.kind, features.normalize, features.max_length) == ("waveform", normalize, 1024)
    theirs = []
    for clip in fsdd_clips:  # the clip normalised alone, zero-padded to the window; no mask, as a base model takes it
        inputs = extractor(load_mono_16k(clip).numpy(), sampling_rate=16_000, padding="max_length",
                           max_length=1024 * 160, return_attention_mask=True, return_tensors="pt").input_values
        with torch.no_grad():
            theirs.append(model(inputs).logits.softmax(-1)[0])
    assert (theirs[0] - theirs[1]).abs().max() > 1e-3  # ten times the tolerance, though 10 s of padding dilutes
    assert largest_gap(predicted(fsdd_clips, folder), theirs) <= 1e-4
