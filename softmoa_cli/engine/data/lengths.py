"""A data set's ``max_length`` (frames of 10 ms per window): the one asked for, else its recipe's,
else derived from its clips' durations, and what to say about a derived one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .features import LONGEST, MAX_SECONDS, FeatureConfig, choose_max_length, frames_of, length_warning
from .spec import Clips, DatasetSpec


def feature_config(spec: DatasetSpec, root: Path, clips: Clips, max_length: int | None,
                   max_seconds: float = MAX_SECONDS, front_end: FeatureConfig = FeatureConfig()) -> FeatureConfig:
    """The features of a data set for a backbone's ``front_end`` (its window and bound are set
    here): ``max_length`` if given, else the data set's; users' data without one gets it derived
    from the clip durations (``length_advice`` says so)."""
    chosen = max_length or spec.max_length or choose_max_length(clip_frame_counts(root, clips))
    return replace(front_end, max_length=chosen, max_seconds=max_seconds)


def clip_frame_counts(root: Path, clips: Clips) -> np.ndarray:
    """Frames of 10 ms of each readable clip, from its header (no decoding)."""
    from .audio import clip_seconds

    seconds = [s for s in (clip_seconds(root / path) for path in clips.paths) if s is not None]
    return np.array([frames_of(s) for s in seconds] or [LONGEST])


def length_advice(spec: DatasetSpec, root: Path, clips: Clips, config: FeatureConfig, derived: bool) -> list[str]:
    """What to say about a user's data set's ``max_length`` when its cache is built (once, where
    it can still be acted on): how a ``derived`` one was chosen, and a warning when most clips are
    heavily padded or cut. Nothing for a registered data set: its recipe chose the length."""
    if spec.location is None:
        return []
    frames, chosen, said = clip_frame_counts(root, clips), config.max_length, []
    if derived:
        covered = float((frames <= chosen).mean())
        capped = ", capped at the AudioSet AST's 1024" if chosen == LONGEST and covered < 0.95 else ""
        said.append(f"{spec.name}: max_length {chosen} frames ({chosen / 100:.2f} s) from the clip durations: it "
                    f"holds {covered:.0%} of {len(frames)} clips whole (longest {frames.max() / 100:.2f} s)"
                    f"{capped}; set data.max_length to choose another")
    warning = length_warning(frames, chosen)
    return said + ([f"{spec.name}: {warning}"] if warning else [])
