"""Self-supervised pretraining of an AST by masked spectrogram modelling (as SSAST and MAE do).

Each clip hides a span of time patches and a band of frequency patches behind a learned mask
token; the AST predicts the log-mel values of every hidden patch (each normalised to zero
mean and unit variance, as MAE's targets) from what stays visible. Spans are several patches
wide, so overlapping neighbours (stride 10 < patch 16) cannot give the answer away. The loss
covers every hidden patch, so the backbone learns from its first step, keeping the local
detail a downstream task needs, where a supervised task of a few classes teaches it to
discard most of it.

``MaskedModel`` wraps an AST with the mask token and a linear decoder; ``pretrain_masked``
trains it over feature tables, resumable per epoch, and returns the AST.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn

from ..data.table import FeatureTable
from ..models.ast import AST
from ..train.optim import make_scheduler
from ..train.progress import Callback
from ..train.resume_state import load_state, save_state


@dataclass(frozen=True)
class Masking:
    """Per clip: one span of ``time_span`` patch columns and one band of ``freq_span`` patch
    rows are hidden (each drawn uniformly in position)."""

    time_span: int = 3
    freq_span: int = 3


class MaskedModel(nn.Module):
    """An AST with a mask token and a linear decoder from tokens to patch values."""

    def __init__(self, ast: AST):
        super().__init__()
        self.ast = ast
        d, size = ast.config.dim, ast.config.patch_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Linear(d, size * size)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Features ``[b, frames, bins]``, ``hidden [b, patches]`` bool -> predicted patch values
        ``[b, patches, size * size]``."""
        patches = self.ast.embed_patches(x)
        patches = torch.where(hidden[..., None], self.mask_token.to(patches.dtype), patches)
        return self.decoder(self.ast.forward_patches(patches)[:, 2:])


def patch_targets(ast: AST, x: torch.Tensor) -> torch.Tensor:
    """The log-mel values under each patch, normalised per patch: ``[b, patches, size * size]``,
    in the order of ``AST.embed_patches`` (frequency-major)."""
    c = ast.config
    pixels = F.unfold(x.transpose(1, 2).unsqueeze(1), c.patch_size, stride=(c.fstride, c.tstride))
    pixels = pixels.transpose(1, 2)  # [b, patches, size * size]
    return (pixels - pixels.mean(-1, keepdim=True)) / (pixels.var(-1, keepdim=True) + 1e-6).sqrt()


def draw_hidden(grid: tuple[int, int], batch: int, masking: Masking, generator: torch.Generator) -> torch.Tensor:
    """``[batch, freq * time]`` bool: a band of rows and a span of columns of the patch grid."""
    rows, columns = grid
    freq_span, time_span = min(masking.freq_span, rows), min(masking.time_span, columns)
    row0 = torch.randint(0, rows - freq_span + 1, (batch, 1), generator=generator)
    col0 = torch.randint(0, columns - time_span + 1, (batch, 1), generator=generator)
    r, c = torch.arange(rows)[None], torch.arange(columns)[None]
    in_band = (r >= row0) & (r < row0 + freq_span)  # [batch, rows]
    in_span = (c >= col0) & (c < col0 + time_span)  # [batch, columns]
    return (in_band[:, :, None] | in_span[:, None, :]).flatten(1)


def masked_loss(model: MaskedModel, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden patches' normalised values."""
    error = (model(x, hidden) - patch_targets(model.ast, x)).pow(2).mean(-1)  # [b, patches]
    return (error * hidden).sum() / hidden.sum()


@dataclass(frozen=True)
class MaskedRecipe:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    seed: int = 0
    masking: Masking = Masking()


def pretrain_masked(ast: AST, tables: list[FeatureTable], recipe: MaskedRecipe, run_dir: Path,
                    callback: Callback | None = None) -> tuple[AST, list[dict]]:
    """Train ``ast`` by masked spectrogram modelling on every clip of ``tables`` (labels and
    splits unused); the state is saved in ``run_dir`` after each epoch (an interrupted run
    resumes there). Returns the AST and the per-epoch log (``loss``: mean over the epoch's
    steps; ``seconds``)."""
    callback = callback or Callback()
    torch.manual_seed(recipe.seed)
    model = MaskedModel(ast)
    clips = Clips(tables)
    steps = clips.count // recipe.batch_size  # per epoch, the last short batch dropped
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.95),
                                  weight_decay=recipe.weight_decay)
    scheduler = make_scheduler(optimizer, steps * recipe.epochs, warmup_steps=steps * recipe.warmup_epochs)
    history: list[dict] = []
    saved = load_state(Path(run_dir))
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        history = saved["history"]
    for epoch in range(len(history), recipe.epochs):
        history.append(_epoch(model, clips, recipe, epoch, steps, optimizer, scheduler))
        callback.message(f"masked pretraining epoch {epoch + 1}/{recipe.epochs}: loss {history[-1]['loss']:.4f} "
                         f"({history[-1]['seconds']:.0f} s)")
        save_state(Path(run_dir), {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "history": history})
    return model.ast, history


class Clips:
    """The clips of several tables as one numbered sequence."""

    def __init__(self, tables: list[FeatureTable]):
        self.tables = tables
        self.starts = np.cumsum([0] + [len(t.labels) for t in tables])  # [tables + 1]
        self.count = int(self.starts[-1])

    def batch(self, indices: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """Features ``[len(indices), frames, bins]`` (a random crop of a long clip), grouped by table."""
        owner = np.searchsorted(self.starts, indices, side="right") - 1
        return torch.cat([self.tables[t].crop_batch(np.sort(indices[owner == t]) - self.starts[t], generator)[0]
                          for t in np.unique(owner)])


def _epoch(model: MaskedModel, clips: Clips, recipe: MaskedRecipe, epoch: int, steps: int,
           optimizer: torch.optim.Optimizer, scheduler) -> dict:
    """One pass over the clips in a seeded order; returns the epoch's log entry."""
    started, losses = time.perf_counter(), []
    order = np.random.default_rng([recipe.seed, epoch]).permutation(clips.count)
    generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
    model.train()
    for step in range(steps):
        x = clips.batch(order[step * recipe.batch_size:(step + 1) * recipe.batch_size], generator)
        hidden = draw_hidden(model.ast.config.grid, len(x), recipe.masking, generator)
        loss = masked_loss(model, x, hidden)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - started}
