"""Shares of clips as users write them (``--max-bad 5%`` or ``0.05``); no torch, so a wrong
flag fails before anything heavy loads."""

from __future__ import annotations

from ..errors import SoftmoaError


def parse_share(text: str | float) -> float:
    """A share of clips as users write it: ``0.05`` or ``5%`` (both mean 5 in 100)."""
    value = str(text).strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise SoftmoaError(f"`max_bad` {text}: give a share of the clips, such as 0.05 or 5%")
    return share


def format_share(share: float) -> str:
    """``0.05`` -> ``5%``, ``0.0882`` -> ``8.8%``: the way ``--max-bad`` accepts it back."""
    return f"{100 * share:.1f}".rstrip("0").rstrip(".") + "%"
