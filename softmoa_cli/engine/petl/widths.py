"""Bottleneck widths and initialisations shared by the configs (``methods``) and the torch
modules (``layers``, ``mixtures``). Torch-free, so that configs validate without torch."""

from __future__ import annotations

from typing import Literal

Init = Literal["zero_up", "research"]
"""zero_up: the up-projection starts at zero (the model starts as the backbone); research:
both projections N(0, 0.02) as the research code."""

PAPER_DIM = 768  # the width of AST-base, on which the paper's reduction rates were chosen
NARROW_UNITS = 8  # hidden units a bottleneck keeps at least on a narrower backbone
RATE_HELP = ("bottleneck r = round(d / reduction_rate); unset: the paper's rate (64 for the single adapter, 128 for "
             f"a mixture's experts) on backbones as wide as AST-base, at least {NARROW_UNITS} hidden units on "
             "narrower ones")


def bottleneck_width(dim: int, reduction_rate: float) -> int:
    """``r = round(d / reduction_rate)``, at least 1."""
    return max(1, round(dim / reduction_rate))


def default_reduction_rate(dim: int, paper_rate: float) -> float:
    """The reduction rate for a backbone of width ``dim`` when none is given: the paper's on a
    backbone as wide as AST-base or wider (768 / 128 = 6 hidden units), else the rate that
    leaves ``NARROW_UNITS`` (the paper's rate on a width-128 backbone would leave one unit)."""
    if dim >= PAPER_DIM or round(dim / paper_rate) >= NARROW_UNITS:
        return paper_rate
    return dim / NARROW_UNITS
