"""Embeddings of audio files: the pooled representation a classifier's head sees.

Each file is cut into windows by the window rule (``data/features.py``); each window goes
through the model (a run's backbone with its PETL modules, or a backbone checkpoint) and its
tokens are pooled as the head pools them (``mean`` of all tokens for a PETL run, ``cls_dist``
for an AudioSet checkpoint), before the head's norm and Linear. A file's embedding is the mean
of its windows' vectors, the same averaging as ``predict``'s probabilities. ``layer`` K takes
the output tokens of block K instead (pooled the same way, without the final LayerNorm, so
``layer`` = depth differs from the default by that norm). A file's windows go through the
model in batches of their own, so the same audio always gives the same row.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data.audio import load_mono_16k
from .data.custom import AUDIO
from .data.features import FeatureConfig, frame_count, window_starts, windows
from .errors import AudioError, SoftmoaError
from .devices import resolve_device
from .fsutil import atomic_write_bytes
from .runs.run import open_classifier
from .models.backbone import Backbone

FRAME_SECONDS = 0.01  # the fbank's frame shift


@dataclass
class FileEmbedding:
    """One file's clip ``embedding [d]`` and its ``windows [w, d]`` with their ``starts`` and
    ``ends`` in seconds, or the reason it could not be embedded."""

    file: str
    embedding: np.ndarray | None = None
    windows: np.ndarray | None = None
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)  # for a traceback on request


def audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files to embed: a file as given, a folder as every audio file under it (by extension,
    recursively, sorted). A folder holding no audio is a SoftmoaError."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(f for f in path.rglob("*") if f.suffix.lower() in AUDIO and f.is_file())
            if not inside:
                raise SoftmoaError(f"{path}: no audio files under this folder ({', '.join(AUDIO)})")
            found.extend(inside)
        else:
            found.append(path)
    return found


def block_tokens(model: Backbone, x: torch.Tensor, layer: int) -> torch.Tensor:
    """The output tokens ``[b, m, d]`` of block ``layer`` (1-based) for inputs ``x``: the model's
    own forward (PETL modules included) stopped after that block."""
    return model.forward_intermediates(x, [layer - 1], stop_early=True, intermediates_only=True)[0]


class Embedder:
    """A model and its features -> embeddings. ``layer`` None: the head's input; K (1..depth):
    block K's output tokens pooled alike. ``batch_size``: windows per forward pass."""

    def __init__(self, model: Backbone, features: FeatureConfig, device: torch.device, batch_size: int = 32,
                 layer: int | None = None):
        depth = len(model.blocks)
        if layer is not None and not 1 <= layer <= depth:
            raise SoftmoaError(f"`layer` {layer}: this model has blocks 1..{depth}")
        if batch_size < 1:
            raise SoftmoaError(f"`batch_size` {batch_size}: give 1 or more")
        self.model, self.features, self.device = model.eval().to(device), features, device
        self.batch_size, self.layer = batch_size, layer
        self.dim = model.config.dim

    @torch.inference_mode()
    def window_embeddings(self, inputs: torch.Tensor) -> torch.Tensor:
        """Windows ``[w, *window]`` -> pooled vectors ``[w, d]`` (float32, CPU)."""
        parts = []
        for start in range(0, len(inputs), self.batch_size):
            x = inputs[start:start + self.batch_size].to(self.device, torch.float32)
            if self.layer is None:
                tokens = self.model.forward_features(x)
            else:
                tokens = block_tokens(self.model, x, self.layer)
            parts.append(self.model.forward_head(tokens, pre_logits=True).float().cpu())
        return torch.cat(parts)

    def embed(self, path: str | Path) -> FileEmbedding:
        """One file's embedding and its windows; raises AudioError for a file that cannot be used."""
        wave = load_mono_16k(path)
        inputs = windows(wave, self.features)
        vectors = self.window_embeddings(inputs)  # [w, d]
        frames = frame_count(wave.numel(), self.features)
        starts = window_starts(frames, self.features.max_length)
        assert len(starts) == len(vectors), (len(starts), len(vectors))
        ends = [min(start + self.features.max_length, frames) for start in starts]
        return FileEmbedding(str(path), vectors.double().mean(dim=0).float().numpy(), vectors.numpy(),
                             np.asarray(starts, dtype=np.float64) * FRAME_SECONDS,
                             np.asarray(ends, dtype=np.float64) * FRAME_SECONDS)

    def embed_files(self, paths: Iterable[str | Path]) -> Iterator[FileEmbedding]:
        """One FileEmbedding per path; a bad file yields its error and the others go on."""
        for path in paths:
            try:
                yield self.embed(path)
            except AudioError as error:
                yield FileEmbedding(str(path), error=error.reason, exception=error)


def embedder_for(checkpoint: str | None = None, run: str | Path | None = None, runs_root: str | Path | None = None,
                 device: str = "cpu", batch_size: int = 32, layer: int | None = None) -> tuple[Embedder, str]:
    """An Embedder over the classifier ``predict`` would use (``runs.run.open_classifier``: a
    ``checkpoint``, a ``run`` folder, or the latest finished run under ``runs_root``), with a
    one-line description."""
    classifier = open_classifier(checkpoint, run, runs_root)
    embedder = Embedder(classifier.model, classifier.features, resolve_device(device), batch_size, layer)
    model = classifier.model
    where = "head input" if layer is None else f"block {layer} of {len(model.blocks)}"
    return embedder, f"{classifier.description}; {where}, pooled '{model.head.pool}', d = {embedder.dim}"


def save_embeddings(out: str | Path, results: list[FileEmbedding], dim: int, per_window: bool = False) -> None:
    """Write the good ``results`` to ``out`` as an npz, atomically: ``embeddings [n, d]`` (float32)
    and ``files [n]``; ``per_window`` adds ``window_embeddings [W, d]``, ``window_file [W]``
    (row in ``files``), ``window_start [W]`` and ``window_end [W]`` (seconds)."""
    good = [r for r in results if r.error is None]
    arrays = {"embeddings": np.stack([r.embedding for r in good]) if good else np.zeros((0, dim), np.float32),
              "files": np.asarray([r.file for r in good], dtype=str)}
    if per_window:
        arrays["window_embeddings"] = (np.concatenate([r.windows for r in good]) if good
                                       else np.zeros((0, dim), np.float32))
        arrays["window_file"] = np.concatenate([np.full(len(r.windows), i, np.int64) for i, r in enumerate(good)]
                                               + [np.zeros(0, np.int64)])
        arrays["window_start"] = np.concatenate([r.starts for r in good] + [np.zeros(0)])
        arrays["window_end"] = np.concatenate([r.ends for r in good] + [np.zeros(0)])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(out, buffer.getvalue())
