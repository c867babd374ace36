"""Does every expert contribute? The paper's expert-imbalance analysis.

Soft-MoA: the share of combine-weight mass each expert receives, per layer, over a split
(combine sums to 1 over slots for each token, so shares sum to 1 over experts).
Dense-MoA: the mean router weight per expert, per layer (also summing to 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import SoftmoaError
from .petl.mixtures import DenseMoA, SoftMoA


@dataclass
class Contributions:
    """``shares [layers, experts]``: each row sums to 1. ``layers``: the mixtures' module names."""

    kind: str
    layers: list[str]
    shares: np.ndarray

    @property
    def normalized_entropy(self) -> np.ndarray:
        """Per layer, entropy of the shares over log(experts): 1 is perfectly balanced."""
        p = np.clip(self.shares, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1) / np.log(self.shares.shape[1])

    @property
    def min_max_ratio(self) -> np.ndarray:
        """Per layer, smallest share over largest share: 1 is perfectly balanced."""
        return self.shares.min(axis=1) / self.shares.max(axis=1)

    def rows(self) -> list[dict]:
        return [{"layer": name, "shares": [round(float(s), 6) for s in shares],
                 "normalized_entropy": round(float(h), 6), "min_max_ratio": round(float(r), 6)}
                for name, shares, h, r in zip(self.layers, self.shares, self.normalized_entropy, self.min_max_ratio)]


def _expert_mass(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-expert weight mass summed over batch and tokens: ``[experts]`` (float64)."""
    if isinstance(module, SoftMoA):
        _, combine = module.route(x)  # [b, m, n, p]
        return combine.sum(dim=(0, 1, 3)).double()
    return module.router_weights(x).sum(dim=(0, 1)).double()  # [b, m, n] -> [n]


@torch.no_grad()
def expert_contributions(model: nn.Module, batches: Iterable[torch.Tensor], device: str = "cpu") -> Contributions:
    """Run ``model`` over ``batches`` of features ``[b, *window]`` and measure the shares."""
    mixtures = [(name, m) for name, m in model.named_modules() if isinstance(m, (SoftMoA, DenseMoA))]
    if not mixtures:
        raise SoftmoaError("this model has no Soft-MoA or Dense-MoA layers: expert contributions need one")
    kinds = {type(m) for _, m in mixtures}
    mass = {name: 0.0 for name, _ in mixtures}
    hooks = [m.register_forward_hook(lambda mod, args, _, name=name: mass.__setitem__(
        name, mass[name] + _expert_mass(mod, args[0]).cpu())) for name, m in mixtures]
    try:
        model.eval().to(device)
        for features in batches:
            model(features.to(device))
    finally:
        for hook in hooks:
            hook.remove()
    shares = np.stack([np.asarray(mass[name]) for name, _ in mixtures])
    shares = shares / shares.sum(axis=1, keepdims=True)
    kind = "soft" if kinds == {SoftMoA} else "dense" if kinds == {DenseMoA} else "mixed"
    return Contributions(kind, [name for name, _ in mixtures], shares)


def contributions_figure(contributions: Contributions):
    """The expert-contribution figure (a matplotlib Figure): a heatmap of shares (layers x
    experts) beside the per-layer balance panel (labelled ``"balance"``), layers in the same
    order, top to bottom, on both."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shares = contributions.shares
    layers, experts = shares.shape
    names = [name.replace(".adapter", "") for name in contributions.layers]
    font = 9 if layers <= 24 else 7
    fig = Figure(figsize=(12, 0.35 * layers + 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    image = left.imshow(shares, aspect="auto", cmap="viridis", vmin=0)
    left.set_xticks(range(experts))
    left.set_yticks(range(layers), names, fontsize=font)
    left.set_xlabel("expert")
    left.set_ylabel("layer")
    left.set_title("share of each expert, per layer", fontsize=10)
    label = "combine-weight share" if contributions.kind == "soft" else "mean router weight"
    fig.colorbar(image, ax=left, label=label)
    y = np.arange(layers)
    right.set_label("balance")
    right.barh(y - 0.2, contributions.normalized_entropy, height=0.4, label="normalised entropy")
    right.barh(y + 0.2, contributions.min_max_ratio, height=0.4, label="min / max share")
    right.set_yticks(y, names, fontsize=font)
    right.set_ylim(layers - 0.5, -0.5)  # top to bottom, as the heatmap
    right.set_xlim(0, 1.0)
    right.axvline(1.0, color="0.3", linewidth=0.8)
    right.set_xlabel("balance (1 = uniform)")
    right.set_title("balance per layer", fontsize=10)
    fig.legend(*right.get_legend_handles_labels(), loc="outside lower right", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(f"Expert contributions ({contributions.kind} mixture, {experts} experts, "
                 f"uniform share = 1/{experts} = {1 / experts:.3f})")
    return fig


def plot_contributions(contributions: Contributions, path: str | Path) -> Path:
    """``contributions_figure`` as a PNG at ``path``."""
    fig = contributions_figure(contributions)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def analyze_run(run_dir: str | Path, split: str = "test", fold: int | None = None, batch_size: int = 64,
                device: str = "cpu", message=None, table=None, dataset: str | None = None) -> Contributions:
    """Expert contributions of a finished run's best model over one split of its own plan
    (``fold``: which fold of a k-fold run; None: the first). ``table``: the run's features
    (a FeatureTable) when they are not a registered data set's cache; ``dataset``: a copy of
    the run's data set elsewhere (``Run.data``)."""
    from .data.cache_open import open_dataset
    from .data.splits import plan_splits
    from .runs.run import Run

    if split not in ("test", "valid", "train"):
        raise SoftmoaError(f"`split` {split}: choose test, valid or train")
    run = Run.open(run_dir)
    data = run.data(dataset)
    table = table or open_dataset(data, message or (lambda text: None), front_end=run.adapter().features)
    plans = plan_splits(table, data)
    plan = plans[0] if fold is None else next((p for p in plans if p.fold == fold), None)
    if plan is None:
        raise SoftmoaError(f"{run_dir}: no fold {fold} in this run")
    model = run.model(plan.fold)
    indices = getattr(plan, split)
    batches = (table.batch(indices[start:start + batch_size])[0] for start in range(0, len(indices), batch_size))
    return expert_contributions(model, batches, device)
