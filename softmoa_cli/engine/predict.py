"""Scoring audio files with a classifier: features per window, probabilities averaged.
Single-label models give softmax scores; multi-label ones (a multi-label run, an AudioSet
checkpoint) independent sigmoid scores, and the labels at or above their decision thresholds."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data.audio import load_mono_16k
from .data.features import FeatureConfig, windows
from .errors import AudioError
from .models.ast import AST
from .train.distributed import resolve_device
from .train.evaluation import clip_log_probabilities, window_log_probabilities


@dataclass
class FilePrediction:
    """Top-k ``(label, score)`` pairs for one file, or the reason it could not be scored; for a
    multi-label model also ``positive``, every ``(label, score)`` at or above its threshold
    (highest score first; None for a single-label model)."""

    file: str
    predictions: list[tuple[str, float]] | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)  # for a traceback on request
    positive: list[tuple[str, float]] | None = None

    def to_dict(self) -> dict:
        """``{"file", "predictions": [{label, score}]}`` and, multi-label, ``"positive"`` alike."""
        pairs = lambda items: [{"label": l, "score": s} for l, s in items or []]
        result = {"file": self.file, "predictions": pairs(self.predictions)}
        return result if self.positive is None else result | {"positive": pairs(self.positive)}


class Predictor:
    """A model, its label names and its features. ``multi_label``: sigmoid scores (AudioSet, a
    multi-label run) and the labels at or above ``thresholds`` (one per label, or one for all;
    default 0.5) are marked positive; otherwise softmax. ``batch_size``: windows per forward
    pass (long files go through in bounded batches)."""

    def __init__(self, model: AST, labels: list[str], multi_label: bool = False,
                 feature_config: FeatureConfig | None = None, device: str = "cpu", batch_size: int = 32,
                 thresholds: list[float] | float | None = None):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.labels = labels
        self.multi_label = multi_label
        self.features = feature_config or FeatureConfig(num_mel_bins=model.config.num_mel_bins,
                                                        max_length=model.config.max_length)
        self.batch_size = batch_size
        self.thresholds = torch.broadcast_to(torch.as_tensor(0.5 if thresholds is None else thresholds,
                                                             dtype=torch.float32), (len(labels),))

    def scores(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave [samples]`` at 16 kHz -> class scores ``[classes]`` (float32, CPU): the mean
        of the window probabilities by the window rule (``data/features.py``)."""
        log_probs = window_log_probabilities(self.model, windows(wave, self.features), self.batch_size, self.device,
                                             multi_label=self.multi_label)  # [windows, classes]
        return clip_log_probabilities(log_probs, torch.zeros(len(log_probs), dtype=torch.long), 1)[0].exp().float()

    def predict_file(self, path: str | Path, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k labels of one file; raises AudioError for a file that cannot be used."""
        return self.predict(path, top_k).predictions

    def predict(self, path: str | Path, top_k: int = 5) -> FilePrediction:
        """One file's top-k labels (and, multi-label, its positive labels); raises AudioError
        for a file that cannot be used."""
        scores = self.scores(load_mono_16k(path))
        values, indices = scores.topk(min(top_k, scores.numel()))
        prediction = FilePrediction(str(path), [(self.labels[i], round(float(v), 6))
                                                for v, i in zip(values, indices.tolist())])
        if self.multi_label:
            order = scores.argsort(descending=True, stable=True).tolist()
            prediction.positive = [(self.labels[i], round(float(scores[i]), 6)) for i in order
                                   if scores[i] >= self.thresholds[i]]
        return prediction

    def predict_files(self, paths: Iterable[str | Path], top_k: int = 5) -> Iterator[FilePrediction]:
        """One FilePrediction per path; a bad file yields its error and the others go on."""
        for path in paths:
            try:
                yield self.predict(path, top_k)
            except AudioError as error:
                yield FilePrediction(str(path), error=error.reason, exception=error)


def predictor_for(checkpoint: str | None = None, run: str | Path | None = None, runs_root: str | Path = "runs",
                  device: str = "cpu", threshold: float | None = None) -> tuple[Predictor, str]:
    """A Predictor with a one-line description: an AST classifier ``checkpoint``, a finetune
    ``run`` folder, or (neither given) the most recent finished run under ``runs_root``.

    A multi-label run marks the labels at or above the thresholds tuned on its validation clips
    (its first fold's, for a k-fold run), an AudioSet checkpoint those at or above 0.5;
    ``threshold`` replaces them with one for every label (refused for single-label models)."""
    from .errors import SoftmoaError
    from .models.pretrained import load_pretrained
    from .petl.adapter_files import adapter_task
    from .train.rundir import fold_directory, latest_run, load_run

    if threshold is not None and not 0 <= threshold <= 1:
        raise SoftmoaError(f"--threshold {threshold}: give a score between 0 and 1")

    if checkpoint is not None and run is not None:
        raise SoftmoaError("give --checkpoint or --run, not both")
    if checkpoint is None:
        run = run or latest_run(runs_root)
        if run is None:
            raise SoftmoaError(f"no model given and no finished run under {runs_root}/: pass --run RUN_DIR or "
                               "--checkpoint PATH_OR_HUB_ID, or train one with `softmoa finetune`")
        model, labels, features = load_run(run)
        multi, thresholds = adapter_task(fold_directory(run))
        _check_threshold(threshold, multi, f"run {run}")
        kind = ", multi-label (sigmoid)" if multi else ""
        return (Predictor(model, labels, multi, features, device, thresholds=threshold if threshold is not None
                          else thresholds), f"run {run}, {len(labels)} labels{kind}")
    pretrained = load_pretrained(checkpoint)
    if not pretrained.extra.get("has_head", True):
        raise SoftmoaError(f"{checkpoint}: this checkpoint has no classifier head; fine-tune it first")
    _check_threshold(threshold, pretrained.multi_label, checkpoint)
    kind = "multi-label (sigmoid)" if pretrained.multi_label else "single-label (softmax)"
    return (Predictor(pretrained.model, pretrained.labels, pretrained.multi_label, device=device,
                      thresholds=threshold), f"{pretrained.source}, {len(pretrained.labels)} labels, {kind}")


def _check_threshold(threshold: float | None, multi_label: bool, model: str) -> None:
    if threshold is not None and not multi_label:
        from .errors import SoftmoaError

        raise SoftmoaError(f"--threshold: {model} is single-label (softmax, one label per file); thresholds apply "
                           "to multi-label models only")
