"""``model.json`` beside an ONNX export: everything needed to turn an audio file into the
graph's input and its output into scores, without softmoa (see the README's "Export")."""

from __future__ import annotations

from ... import __version__
from ..data.features import MIN_SAMPLES, fbank_options
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
        "input": {"name": input_name, "shape": ["batch", f.max_length, f.num_mel_bins], "dtype": "float32"},
        "output": {"name": output_name, "shape": ["batch", len(source.classifier.labels)], "meaning": "logits"},
        "features": {
            "sample_rate": f.sample_rate,
            "audio": "channels averaged to mono, resampled with torchaudio.functional.resample to sample_rate",
            "min_samples": MIN_SAMPLES,
            "fbank": fbank_options(f),
            "mean": f.mean, "std": f.std,
            "normalize": "(fbank - mean) / (2 * std), after the window's zero-padding",
            "precision": "float16",
            "precision_meaning": "normalised windows are rounded to float16 (as the feature cache stores them), "
                                 "then fed as float32",
            "max_length": f.max_length,
            "max_seconds": f.max_seconds,
            "max_seconds_meaning": "only a clip's first max_seconds are scored: its audio is cut to min_samples + "
                                   "(round(max_seconds * 100) - 1) * sample_rate / 100 samples before the fbank"},
        "window_rule": {
            "window": f.max_length,
            "starts": "a clip of at most `window` frames: one window at 0, zero-padded at the end; a longer clip: "
                      "0, window, 2 * window, ... while below frames - window, then frames - window (the last "
                      "window ends at the clip's end)",
            "clip_score": "mean of the windows' probabilities"},
        "labels": list(source.classifier.labels),
        "task": {"kind": source.classifier.task.name, "scores": source.classifier.task.activation,
                 "thresholds": list(thresholds) if (thresholds := source.classifier.thresholds) is not None else None},
        "source": {"run": public_name(str(source.run)), "fold": source.fold,
                   "method": source.method.model_dump(mode="json")},
        "check": {"max_abs_logit_difference": difference, "tolerance": tolerance, "batches": list(batches),
                  "against": "the run's torch model (LoRA unmerged), onnxruntime CPUExecutionProvider"},
    }
