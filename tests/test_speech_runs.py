"""The speech backbones through every command: ``finetune --checkpoint`` on a tiny random Whisper
encoder folder and on a tiny random wav2vec2 folder trains Soft-MoA on FSDD clips from that
backbone's own features (a cache of its own, beside the AST's; a hub id from the local hub
cache gives the same), and ``predict`` (with ``--timeline``), ``evaluate``, ``embed``,
``analyze`` and ``export --format onnx`` (checked with onnxruntime on real speech) work on the
run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import load_run, run, run_ok, scaled_hf_model
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.cache import load_cache
from softmoa_cli.engine.data.features import windows

transformers = pytest.importorskip("transformers")

DIGITS, SPEAKERS, TAKES = "012", ("jackson", "theo"), (0, 1, 5, 6, 7, 8, 9)  # takes 0-4: FSDD's test split
WHISPER = dict(num_mel_bins=16, d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
               decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, max_source_positions=100,
               max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
               decoder_start_token_id=3)
WAV2VEC2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                conv_dim=(8,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=12)
FAMILIES = ("whisper", "wav2vec2")
KINDS = {"whisper": "whisper", "wav2vec2": "waveform"}  # the front end each family takes
WINDOW = {"whisper": (100, 16), "wav2vec2": (100 * 160,)}  # FSDD's max_length: 100 frames


def backbone_folder(family: str, folder):
    """A tiny random transformers encoder of ``family`` with its extractor's preprocessor config."""
    if family == "whisper":
        scaled_hf_model(transformers.WhisperModel, transformers.WhisperConfig(**WHISPER), folder)
        transformers.WhisperFeatureExtractor(feature_size=16).save_pretrained(folder)
    else:
        scaled_hf_model(transformers.Wav2Vec2Model, transformers.Wav2Vec2Config(**WAV2VEC2), folder)
        transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def speech(tmp_path_factory, fsdd_recordings):
    """FSDD's layout with 42 clips (3 digits, 2 speakers) installed in a home of its own, and a
    one-epoch Soft-MoA run on each family's folder: ``{"home", "clips", family: (folder, run, output)}``."""
    root = tmp_path_factory.mktemp("speech")
    copy = root / "fsdd" / "recordings"
    copy.mkdir(parents=True)
    for digit in DIGITS:
        for speaker in SPEAKERS:
            for take in TAKES:
                shutil.copy(fsdd_recordings / f"{digit}_{speaker}_{take}.wav", copy)
    home = root / "home"
    run_ok("download", "fsdd", "--from", root / "fsdd", "--home", home)
    found = {"home": home, "clips": [copy / "0_jackson_0.wav", copy / "1_theo_1.wav", copy / "2_theo_5.wav"]}
    for family in FAMILIES:
        folder = backbone_folder(family, root / family)
        result = run_ok("finetune", "--dataset", "fsdd", "--checkpoint", folder, "--method", "soft", "--experts", 2,
                        "--epochs", 1, "--batch-size", 8, "--home", home, "--out", root / f"run-{family}",
                        "--set", "data.spec_augment.time_mask=10")
        found[family] = (folder, root / f"run-{family}", result.output)
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_finetune_trains_on_the_backbones_own_features(speech, family):
    folder, run_dir, output = speech[family]
    said = {"whisper": "features: Whisper log-mels, 16 bins", "wav2vec2": "features: 16 kHz waveform, each window "
            "scaled to zero mean and unit variance"}[family]
    assert said in output and "preprocessor_config.json" in output and "test accuracy" in output
    model, labels, features = load_run(run_dir)
    assert (model.family, features.kind, features.max_length) == (family, KINDS[family], 100)
    assert model.config.max_length == 100  # Whisper: its positions sliced to one window, no 30 s padding
    cache = load_cache(next(p for p in (speech["home"] / "cache" / "fsdd").glob("L100-*")
                            if json.loads((p / "index.json").read_text())["settings"]["features"]["kind"]
                            == features.kind))
    assert cache.features.shape == (42, *WINDOW[family]) and cache.feature_config == features
    clip = load_mono_16k(speech["clips"][0])
    row = cache.paths.index("recordings/0_jackson_0.wav")
    assert np.array_equal(cache.features[row], windows(clip, features)[0].numpy())  # predict's windows, exactly


def test_each_backbone_has_its_own_cache_beside_the_asts(speech):
    run_ok("prepare", "fsdd", "--home", speech["home"])  # the AST's fbank
    caches = [p for p in (speech["home"] / "cache" / "fsdd").glob("L100-*") if (p / "index.json").is_file()]
    kinds = {json.loads((p / "index.json").read_text())["settings"]["features"]["kind"]: p.name for p in caches}
    assert sorted(kinds) == ["fbank", "waveform", "whisper"] and len(set(kinds.values())) == 3
    prepared = run_ok("prepare", "fsdd", "--checkpoint", speech["whisper"][0], "--home", speech["home"])
    assert "already prepared" in prepared.output and kinds["whisper"] in prepared.output.replace("\n", "")


def test_a_hub_id_in_the_local_cache_gives_its_front_end(speech, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--whisper-tiny-test"
    shutil.copytree(speech["whisper"][0], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    prepared = " ".join(run_ok("prepare", "fsdd", "--checkpoint", "someone/whisper-tiny-test", "--home",
                               speech["home"]).output.split())  # as one line, however the console wrapped it
    assert "features: Whisper log-mels, 16 bins (from someone/whisper-tiny-test's preprocessor_config.json)" in prepared
    assert "already prepared" in prepared  # the run's own cache: the same features


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_timeline_evaluate_embed_and_analyze_work_on_the_run(speech, family, tmp_path):
    _, run_dir, _ = speech[family]
    clips = speech["clips"]
    predicted = json.loads(run_ok("predict", *clips, "--run", run_dir, "--json", "-k", 10).stdout)
    model, labels, features = load_run(run_dir)
    with torch.no_grad():
        expected = model(windows(load_mono_16k(clips[1]), features).float()).softmax(-1).mean(0)
    scores = {p["label"]: p["score"] for p in predicted[1]["predictions"]}
    assert max(abs(scores[label] - float(expected[i])) for i, label in enumerate(labels)) <= 1e-5
    timeline = json.loads(run_ok("predict", clips[0], "--run", run_dir, "--timeline", "--window", 0.3,
                                 "--json").stdout)[0]["timeline"]
    assert len(timeline) >= 2 and timeline[0]["start"] == 0 and timeline[1]["start"] == 0.15
    evaluated = run_ok("evaluate", run_dir, "--home", speech["home"]).output
    assert "test accuracy" in evaluated
    run_ok("embed", *clips, "--run", run_dir, "--out", tmp_path / "embeddings.npz")
    with np.load(tmp_path / "embeddings.npz") as saved:
        assert saved["embeddings"].shape == (3, 32)
    analyzed = run_ok("analyze", run_dir, "--home", speech["home"]).output
    assert "blocks.0.attn" in analyzed and "blocks.1.attn" in analyzed


@pytest.mark.parametrize("family", FAMILIES)
def test_the_onnx_export_gives_the_runs_logits_on_real_speech(speech, family, tmp_path):
    import onnxruntime

    _, run_dir, _ = speech[family]
    run_ok("export", run_dir, "--format", "onnx", "--out", tmp_path / "onnx")
    meta = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert meta["input"]["shape"] == ["batch", *WINDOW[family]] and meta["features"]["kind"] == KINDS[family]
    model, _, features = load_run(run_dir)
    x = torch.cat([windows(load_mono_16k(clip), features) for clip in speech["clips"]]).float()
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(x)
    got = torch.from_numpy(session.run(["logits"], {"features": x.numpy()})[0])
    assert (got - expected).abs().max() <= 1e-4


def test_serve_scores_both_backbones_as_predict_does_and_streams_the_waveform_one(speech):
    from softmoa_cli.engine.serve.batcher import Batcher
    from softmoa_cli.engine.serve.service import Query, RequestError, Service
    from softmoa_cli.engine.serve.tasks import TaskSet

    tasks = TaskSet()
    for family in FAMILIES:
        tasks.add(family, speech[family][1])
    assert len(tasks.groups) == 2  # two backbones, each its own group
    service = Service(tasks, Batcher(max_batch=8, max_wait_ms=5))
    clip = speech["clips"][1]
    try:
        for family in FAMILIES:
            served = service.predict(family, clip.read_bytes(), clip.name, Query(top_k=10))
            predicted = json.loads(run_ok("predict", clip, "--run", speech[family][1], "--json", "-k", 10).stdout)[0]
            scores = {p["label"]: p["score"] for p in predicted["predictions"]}
            assert max(abs(p["score"] - scores[p["label"]]) for p in served["predictions"]) <= 1e-5
        with pytest.raises(RequestError, match="takes Whisper log-mels, 16 bins") as refused:
            service.stream("whisper", Query())
        assert refused.value.status == 400
        live = service.stream("wav2vec2", Query(top_k=10, window=0.3, hop=0.2))
        audio = torch.cat([load_mono_16k(c) for c in speech["clips"]]).numpy()  # about 1.2 s of speech
        pcm = (audio * 32768).round().clip(-32768, 32767).astype("<i2").tobytes()
        records = [w.to_dict() for at in range(0, len(pcm), 999) for w in live.feed(pcm[at:at + 999])]
        records += [w.to_dict() for w in live.end()]
    finally:
        service.batcher.close()
    wav = clip.parent.parent / "as-streamed.wav"  # the same samples as a file
    sf.write(wav, np.frombuffer(pcm, dtype="<i2"), 16_000, subtype="PCM_16")
    timeline = json.loads(run_ok("predict", wav, "--run", speech["wav2vec2"][1], "--timeline", "--window", 0.3,
                                 "--hop", 0.2, "--json", "-k", 10).stdout)[0]["timeline"]
    assert len(records) >= 3 and [(r["start"], r["end"]) for r in records] == [(w["start"], w["end"]) for w in timeline]
    for got, want in zip(records, timeline):
        want = {p["label"]: p["score"] for p in want["predictions"]}
        assert max(abs(p["score"] - want[p["label"]]) for p in got["predictions"]) <= 1e-5
    streamed = run("predict", "-", "--stream", "--run", speech["whisper"][1])
    said = streamed.stderr.strip().splitlines()  # the thread and model lines, then the error's one line
    assert streamed.exit_code == 2 and streamed.stdout == "" and "Traceback" not in streamed.stderr
    assert said[-1].startswith("error: live audio") and "this model takes Whisper log-mels" in said[-1]
