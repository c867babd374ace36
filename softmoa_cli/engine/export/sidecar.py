"""``model.json`` beside an ONNX export: everything needed to turn an audio file into the
graph's input and its output into scores, without softmoa (see the README's "Export")."""

from __future__ import annotations

from ... import __version__
from ..data.features import MIN_SAMPLES, SAMPLES_PER_FRAME, FeatureConfig, fbank_options
from ..runs.public import public_name
from .source import RunModel

SIDECAR = "model.json"


def describe(source: RunModel, model_file: str, input_name: str, output_name: str, difference: float,
             tolerance: float, batches: tuple[int, ...]) -> dict:
    """The JSON: the graph's input and output, feature settings, window rule, labels, task, the
    run it came from and the check it passed."""
    f = source.features
    return {
        "format": "softmoa-onnx", "version": __version__, "model": model_file,
        "input": {"name": input_name, "shape": ["batch", *f.window_shape], "dtype": "float32"},
        "output": {"name": output_name, "shape": ["batch", len(source.classifier.labels)], "meaning": "logits"},
        "features": {"kind": f.kind, "sample_rate": f.sample_rate, "audio": AUDIO} | RECIPES[f.kind](f) | {
            "precision": "float16",
            "precision_meaning": "windows are rounded to float16 (as the feature cache stores them), then fed as "
                                 "float32",
            "max_length": f.max_length,
            "max_seconds": f.max_seconds},
        "window_rule": {
            "window": f.max_length,
            "starts": "frames of 10 ms; a clip of at most `window` frames: one window at 0, padded at the end as "
                      "`features` says; a longer clip: 0, window, 2 * window, ... while below frames - window, then "
                      "frames - window (the last window ends at the clip's end)",
            "clip_score": "mean of the windows' probabilities"},
        "labels": list(source.classifier.labels),
        "task": {"kind": source.classifier.task.name, "scores": source.classifier.task.activation,
                 "thresholds": list(thresholds) if (thresholds := source.classifier.thresholds) is not None else None},
        "source": {"run": public_name(str(source.run)), "fold": source.fold,
                   "method": source.method.model_dump(mode="json")},
        "check": {"max_abs_logit_difference": difference, "tolerance": tolerance, "batches": list(batches),
                  "against": "the run's torch model (LoRA unmerged), onnxruntime CPUExecutionProvider"},
    }


AUDIO = "channels averaged to mono, resampled with torchaudio.functional.resample to sample_rate"


def _fbank(f: FeatureConfig) -> dict:
    return {"min_samples": MIN_SAMPLES, "fbank": fbank_options(f), "mean": f.mean, "std": f.std,
            "normalize": "(fbank - mean) / (2 * std), after the window's zero-padding",
            "max_seconds_meaning": "only a clip's first max_seconds are scored: its audio is cut to min_samples + "
                                   "(round(max_seconds * 100) - 1) * sample_rate / 100 samples before the fbank"}


def _whisper(f: FeatureConfig) -> dict:
    return {"num_mel_bins": f.num_mel_bins,
            "log_mel": "Whisper's (transformers' WhisperFeatureExtractor): power of a centred STFT (n_fft 400, hop "
                       "160, Hann), Slaney mel filters 0-8 kHz, log10 floored at 1e-10, clamped to 8 below the clip's "
                       "maximum, then (x + 4) / 4; frames: samples // 160",
            "padding": "a clip shorter than one window is followed by zeros (silence) up to the window before the "
                       "log-mel, as the extractor pads (to the window, not to 30 s); a longer clip is not padded",
            "max_seconds_meaning": "only a clip's first max_seconds are scored: its audio is cut to "
                                   "round(max_seconds * 100) * 160 samples before the log-mel"}


def _waveform(f: FeatureConfig) -> dict:
    return {"window_samples": f.max_length * SAMPLES_PER_FRAME, "normalize": f.normalize,
            "samples": "a window of frames [start, start + window) holds samples [160 * start, 160 * (start + "
                       "window)) of the clip (its frames: ceil(samples / 160)); "
                       + ("they are scaled to zero mean and unit variance, (x - mean) / sqrt(var + 1e-7), "
                          if f.normalize else "")
                       + "then zero-padded to window_samples",
            "max_seconds_meaning": "only a clip's first max_seconds are scored: its audio is cut to "
                                   "round(max_seconds * 100) * 160 samples"}


RECIPES = {"fbank": _fbank, "whisper": _whisper, "waveform": _waveform}
