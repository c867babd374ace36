"""The feature cache: every clip's features computed once, memory-mapped for training.

A published cache is the folder ``$SOFTMOA_HOME/cache/<name>/<key>/``:

- ``features.f16``: float16 ``[n, max_length, mel_bins]``, C order, raw (``np.memmap``): each
  clip's first window (see ``features.window_starts``), what training reads;
- ``extra.f16``: float16 ``[k, max_length, mel_bins]``: the further windows of the clips longer
  than ``max_length``, clip after clip, so evaluation scores whole clips as ``predict`` does
  (absent when no clip is longer; each clip is kept up to its first ``max_seconds``, default
  ``MAX_SECONDS``, the window rule applied to those frames);
- ``index.json``: settings, source fingerprint, label names and per clip path, label, split,
  fold, number of windows and kept frames (training crops long clips at random, ``table.py``);
- ``bad.tsv``: the clips that were skipped, with the reason (``path<TAB>reason``);
- ``accepted.json``: the share of bad clips a user accepted (``prepare --max-bad``), remembered
  so that every later command opening the cache accepts it too.

``key`` is ``L<max_length>-<settings hash>-<sources hash>``: the feature settings (with
``max_seconds`` and this module's ``FORMAT``), and every clip's path, label, split, fold, size
and mtime. Changed settings or sources give a new key, never a silently reused cache. A cache is built in
``.<key>.partial/`` chunk by chunk (``state.json`` records finished chunks and bad clips, so an
interrupted prepare resumes), then the bad rows are dropped and the folder is renamed into
place: readers see a whole cache or none. A lock file keeps two prepares of one key apart.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import AudioError, SoftmoaError
from ..task import task_named
from ..fsutil import atomic_write_json, atomic_write_text, file_lock
from .download import installed_root
from .features import (LONGEST, MAX_SECONDS, FeatureConfig, choose_max_length, frame_count, frames_of, length_warning,
                       windows)
from .paths import cache_dir
from .registry import resolve
from .spec import Clips, DatasetSpec
from .shares import format_share
from .table import BAD, MAX_BAD, FeatureTable

if TYPE_CHECKING:
    from ..config import DataConfig

FORMAT = 4  # bump when the stored features change meaning (2: windows of long clips, float16 windows;
# 3: the first max_seconds of a clip kept, its kept frames in the index; 4: max_seconds in the features)
FEATURES = "features.f16"
EXTRA = "extra.f16"
INDEX = "index.json"
ACCEPTED = "accepted.json"

Progress = Callable[[int, int], None]


def load_cache(folder: str | Path) -> FeatureTable:
    """Open a published cache folder (memory-maps the features, reads the index)."""
    folder = Path(folder)
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError) as error:
        raise SoftmoaError(f"{folder}: not a feature cache ({error}); run softmoa prepare again") from None
    config = FeatureConfig(**index["settings"]["features"])
    counts = np.array(index["windows"], dtype=np.int64)
    frames = np.array(index["frames"], dtype=np.int64) if "frames" in index else None
    window = (config.max_length, config.num_mel_bins)
    features, extra = (np.memmap(folder / name, dtype=np.float16, mode="r", shape=(rows, *window)) if rows
                       else np.zeros((0, *window), np.float16)
                       for name, rows in ((FEATURES, len(counts)), (EXTRA, int((counts - 1).sum()))))
    accepted = json.loads((folder / ACCEPTED).read_text())["max_bad"] if (folder / ACCEPTED).is_file() else MAX_BAD
    labels = task_named(index["task"]).decode(index["labels"], len(index["label_names"]))
    return FeatureTable(index["name"], features, labels, index["label_names"],
                        np.array(index["split"], dtype="<U5"), np.array(index["fold"], dtype=np.int64), config,
                        counts, extra, folder, index["paths"], [tuple(row) for row in index["bad"]], index["listed"],
                        accepted, frames)


# --- features of one clip ----------------------------------------------------------------


def clip_windows_and_frames(path: Path, config: FeatureConfig) -> tuple[np.ndarray, int]:
    """Windows of one audio file by the window rule (``features.windows``: its first
    ``config.max_seconds``), float16 ``[windows, max_length, mel_bins]``, and the number of frames
    they cover; AudioError if unusable."""
    from .audio import load_mono_16k

    wave = load_mono_16k(path, config.sample_rate)
    return windows(wave, config).numpy(), frame_count(wave.numel(), config)


def clip_features(path: Path, config: FeatureConfig) -> np.ndarray:
    """Windows of one audio file by the window rule: float16 ``[windows, max_length, mel_bins]``;
    AudioError if unusable."""
    return clip_windows_and_frames(path, config)[0]


def _extra_path(features_path: str, start: int) -> Path:
    return Path(features_path).parent / "extra" / f"{start}.npy"


def _compute_chunk(job: tuple[str, tuple[int, int, int], int, list[str], FeatureConfig]) -> tuple[list, dict, dict]:
    """Fill rows ``start..`` of the features file with the first window of the clips ``files``
    and save their further windows to ``extra/<start>.npy``; returns the bad clips as ``(row,
    reason)`` (their rows stay zero), ``{row: windows}`` and ``{row: kept frames}`` of the long
    clips. Runs in a worker process."""
    features_path, shape, start, files, config = job
    rows = np.memmap(features_path, dtype=np.float16, mode="r+", shape=shape)
    bad, counts, frames, extra = [], {}, {}, []
    for offset, file in enumerate(files):
        try:
            clip, length = clip_windows_and_frames(Path(file), config)
        except AudioError as error:
            rows[start + offset] = 0
            bad.append((start + offset, error.reason))
            continue
        rows[start + offset] = clip[0]
        if len(clip) > 1:
            counts[start + offset] = len(clip)
            frames[start + offset] = length
            extra.append(clip[1:])
    rows.flush()
    if extra:
        path = _extra_path(features_path, start)
        path.parent.mkdir(exist_ok=True)
        with open(path.with_suffix(".tmp"), "wb") as handle:
            np.save(handle, np.concatenate(extra))
        os.replace(path.with_suffix(".tmp"), path)
    return bad, counts, frames


def _single_thread() -> None:
    """Worker initialiser: one torch thread per process (the fbank is small; threads only contend)."""
    import torch

    torch.set_num_threads(1)


def _context():
    """Fork where there is one (workers start in milliseconds and only run CPU torch, which is
    fork-safe with one thread), spawn elsewhere."""
    from multiprocessing import get_all_start_methods

    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- fingerprint -------------------------------------------------------------------------


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def settings_of(config: FeatureConfig) -> dict:
    return {"format": FORMAT, "features": asdict(config)}


def cache_key(root: Path, clips: Clips, config: FeatureConfig) -> str:
    """``L<max_length>-<settings hash>-<sources hash>`` (sources: each clip's metadata, size, mtime)."""
    sources = []
    for row, (path, split, fold) in enumerate(zip(clips.paths, clips.split.tolist(), clips.fold.tolist())):
        try:
            info = (root / path).stat()
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size, mtime = -1, 0
        sources.append((path, clips.label_text(row), split, fold, size, mtime))
    return f"L{config.max_length}-{_digest(settings_of(config))}-{_digest(sources)}"


# --- building ----------------------------------------------------------------------------


def _build(root: Path, clips: Clips, config: FeatureConfig, partial: Path, workers: int, chunk: int,
           progress: Progress | None) -> tuple[dict[int, str], dict[int, int], dict[int, int]]:
    """Compute every clip's row in ``partial/features.f16``, resuming finished chunks; returns
    the bad clips ``{row: reason}``, the windows of the long clips ``{row: count}`` and their
    kept frames ``{row: frames}``."""
    shape = (len(clips.paths), config.max_length, config.num_mel_bins)
    state_path = partial / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state is None:
        partial.mkdir(parents=True, exist_ok=True)
        np.memmap(partial / FEATURES, dtype=np.float16, mode="w+", shape=shape).flush()
        state = {"chunk": chunk, "done": [], "bad": {}, "windows": {}, "frames": {}}
        atomic_write_json(state_path, state)
    chunk, done = state["chunk"], set(state["done"])
    bad = {int(row): reason for row, reason in state["bad"].items()}
    counts = {int(row): count for row, count in state["windows"].items()}
    frames = {int(row): count for row, count in state.get("frames", {}).items()}
    starts = [s for s in range(0, shape[0], chunk) if s // chunk not in done]
    jobs_list = [(str(partial / FEATURES), shape, s, [str(root / p) for p in clips.paths[s:s + chunk]], config)
                 for s in starts]
    finished = shape[0] - sum(len(job[3]) for job in jobs_list)
    if progress:
        progress(finished, shape[0])

    def record(job, result):
        nonlocal finished
        rows_bad, rows_windows, rows_frames = result
        bad.update(rows_bad)
        counts.update(rows_windows)
        frames.update(rows_frames)
        done.add(job[2] // chunk)
        finished += len(job[3])
        atomic_write_json(state_path, {"chunk": chunk, "done": sorted(done), "bad": {str(k): v for k, v in bad.items()},
                                       "windows": {str(k): v for k, v in counts.items()},
                                       "frames": {str(k): v for k, v in frames.items()}})
        if progress:
            progress(finished, shape[0])

    if workers <= 1:
        with _one_torch_thread():
            for job in jobs_list:
                record(job, _compute_chunk(job))
    else:
        with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_single_thread) as pool:
            futures = {pool.submit(_compute_chunk, job): job for job in jobs_list}
            try:
                for future in as_completed(futures):
                    record(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return bad, counts, frames


def _publish(name: str, root: Path, clips: Clips, config: FeatureConfig, key: str, partial: Path,
             bad: dict[int, str], counts: dict[int, int], final: Path, frames: dict[int, int] | None = None) -> None:
    """Drop the bad rows, gather the long clips' further windows into ``extra.f16``, write the
    index and the report, and rename ``partial`` to ``final``.

    Safe to run again after an interruption: the compacted rows go to ``compact.f16``, the
    state records that they are complete, and only then do they replace the full file; the
    per-chunk window files stay until the folder is published.
    """
    keep = np.array([i for i in range(len(clips.paths)) if i not in bad], dtype=np.int64)
    state_path, compact_path = partial / "state.json", partial / "compact.f16"
    state = json.loads(state_path.read_text())
    if bad and not state.get("compacted"):
        shape = (len(clips.paths), config.max_length, config.num_mel_bins)
        rows = np.memmap(partial / FEATURES, dtype=np.float16, mode="r", shape=shape)
        compact = np.memmap(compact_path, dtype=np.float16, mode="w+", shape=(len(keep), *shape[1:]))
        for start in range(0, len(keep), 1024):
            compact[start:start + 1024] = rows[keep[start:start + 1024]]
        compact.flush()
        del rows, compact
        atomic_write_json(state_path, {**state, "compacted": True})
    if compact_path.exists():
        os.replace(compact_path, partial / FEATURES)
    _gather_extra(partial, counts, set(bad))
    report = [(clips.paths[i], reason) for i, reason in sorted(bad.items())]
    atomic_write_text(partial / BAD, "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in report))
    atomic_write_json(partial / INDEX, {
        "format": FORMAT, "name": name, "key": key, "root": str(root), "settings": settings_of(config),
        "label_names": clips.label_names, "listed": len(clips.paths), "bad": report,
        "task": clips.task.name, "paths": [clips.paths[i] for i in keep],
        "labels": clips.task.encode(clips.labels[keep]),
        "split": clips.split[keep].tolist(), "fold": clips.fold[keep].tolist(),
        "windows": [counts.get(int(i), 1) for i in keep],
        "frames": [(frames or {}).get(int(i), config.max_length) for i in keep]})
    os.replace(partial, final)
    (final / "state.json").unlink()
    shutil.rmtree(final / "extra", ignore_errors=True)


def _gather_extra(partial: Path, counts: dict[int, int], bad: set[int]) -> None:
    """The further windows of the kept long clips, in row order, from the per-chunk files into
    ``extra.f16`` (a chunk file holds its long clips' windows one clip after another)."""
    chunk_files = sorted((partial / "extra").glob("*.npy"), key=lambda path: int(path.stem))
    if not chunk_files:
        return
    starts = [int(path.stem) for path in chunk_files] + [max(counts) + 1]
    with open(partial / f"{EXTRA}.tmp", "wb") as handle:
        for path, start, end in zip(chunk_files, starts, starts[1:]):
            windows, offset = np.load(path), 0
            for row in sorted(r for r in counts if start <= r < end):
                if row not in bad:
                    handle.write(windows[offset:offset + counts[row] - 1].tobytes())
                offset += counts[row] - 1
    os.replace(partial / f"{EXTRA}.tmp", partial / EXTRA)


def check_bad(cache: FeatureTable, max_bad: float | None = None) -> None:
    """SoftmoaError when no clip is usable or the share of bad clips is above the accepted share:
    ``max_bad`` when given, else the share accepted for this cache before (``accept_bad``)."""
    if not len(cache):
        raise SoftmoaError(f"{cache.name}: none of the {cache.listed} clips could be read; see {cache.report}")
    accepted = cache.accepted_bad if max_bad is None else max_bad
    share = len(cache.bad) / cache.listed
    if share > accepted:
        needed = format_share(math.ceil(share * 1000) / 1000)
        raise SoftmoaError(f"{cache.name}: {len(cache.bad)} of {cache.listed} clips are bad ({format_share(share)}), "
                           f"above the accepted {format_share(accepted)}; see {cache.report}, fix or remove them, "
                           f"or accept them with --max-bad {needed}")


def accept_bad(cache: FeatureTable, max_bad: float) -> None:
    """Check the cache against ``max_bad`` and remember that share with it, so later commands
    (finetune, evaluate) opening this cache without a ``--max-bad`` of their own accept the
    same clips."""
    check_bad(cache, max_bad)
    if max_bad != cache.accepted_bad:
        atomic_write_json(cache.path / ACCEPTED, {"max_bad": max_bad})
        cache.accepted_bad = max_bad


def _root_of(spec: DatasetSpec, data: Path | None, home: Path | None) -> Path:
    if data is None:
        return installed_root(spec, home)
    root = spec.find_root(data) if data.is_dir() else None
    if root is None:
        raise SoftmoaError(f"--data {data}: no {spec.marker} in it or its sub-folders; is this a copy of {spec.title}?")
    return root


def prepare_cache(name_or_path: str | Path, *, max_length: int | None = None, workers: int = 1, home: Path | None = None,
                  data: Path | None = None, seed: int = 0, chunk: int = 64, progress: Progress | None = None,
                  message: Callable[[str], None] = lambda text: None,
                  max_seconds: float = MAX_SECONDS) -> tuple[FeatureTable, bool]:
    """Prepare (or find) the feature cache of a data set; returns ``(cache, built)``.

    ``name_or_path``: a registered data set or a user's folder / manifest. ``max_length``:
    frames (default: the data set's). ``workers``: worker processes. ``data``: a copy of the data
    set elsewhere than ``$SOFTMOA_HOME/data/<name>``. ``seed``: the split of users' data without
    one. ``chunk``: clips per unit of work (and of resumption). ``progress(done, total)`` after
    each chunk. ``max_seconds``: each clip is kept up to its first ``max_seconds`` (another
    bound is another cache). Bad clips are skipped and listed (``cache.bad``); judge them with
    ``check_bad``.
    """
    spec = resolve(name_or_path, seed)
    root = _root_of(spec, data, home)
    clips = spec.scan(root)
    if not clips.paths:
        raise SoftmoaError(f"{spec.name}: no clips listed in {root}")
    if len(clips.label_names) < clips.task.min_labels:  # a single-label set of one class learns nothing
        raise SoftmoaError(f"{spec.name}: every clip is {clips.label_names[0]!r}, and classifying one class learns "
                           "nothing (single-label needs two or more); to detect a sound, add a second class of clips "
                           "without it (e.g. a background/ folder), or tag clips with a manifest's labels column "
                           "(multi-label)")
    config = feature_config(spec, root, clips, max_length, max_seconds)
    key = cache_key(root, clips, config)
    folder = cache_dir(spec.name, home)
    final, built = folder / key, False
    with file_lock(folder / f".{key}.lock", message):
        if not (final / INDEX).is_file():
            for line in length_advice(spec, root, clips, config, derived=not (max_length or spec.max_length)):
                message(line)
            partial = folder / f".{key}.partial"
            bad, counts, frames = _build(root, clips, config, partial, workers, chunk, progress)
            bad |= {int(row): "no labels: give it at least one label in the labels column, or remove it"
                    for row in np.flatnonzero(clips.task.unlabelled(clips.labels))}  # cannot be learned or scored
            _publish(spec.name, root, clips, config, key, partial, bad, counts, final, frames)
            built = True
    return load_cache(final), built


def feature_config(spec: DatasetSpec, root: Path, clips: Clips, max_length: int | None,
                   max_seconds: float = MAX_SECONDS) -> FeatureConfig:
    """The features of a data set: ``max_length`` if given, else the data set's; users' data
    without one gets it derived from the clip durations (``length_advice`` says so)."""
    chosen = max_length or spec.max_length or choose_max_length(clip_frame_counts(root, clips))
    return FeatureConfig(max_length=chosen, max_seconds=max_seconds)


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


def find_cache(name: str, config: FeatureConfig, home: Path | None = None) -> Path | None:
    """The newest published cache of ``name`` with these settings, whatever its sources."""
    prefix = f"L{config.max_length}-{_digest(settings_of(config))}-"
    folder = cache_dir(name, home)
    found = [p for p in folder.glob(prefix + "*") if (p / INDEX).is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: (p / INDEX).stat().st_mtime, default=None)


def open_cache(name_or_path: str | Path, max_length: int | None = None, prepare: bool = True,
               message: Callable[[str], None] = print, *, home: Path | None = None, workers: int | None = None,
               seed: int = 0, max_bad: float | None = None, max_seconds: float = MAX_SECONDS) -> FeatureTable:
    """The feature cache of a data set for training; with ``prepare`` it is built first when
    missing (``workers`` processes, default up to 4), without it a missing cache is an error.

    When the data set's audio is not installed, the newest cache with the same settings is
    used: training does not need the audio. ``max_bad``: the share of bad clips to accept
    (remembered with the cache); without it, the share accepted before, at least ``MAX_BAD``.
    ``max_seconds``: the bound on each clip kept (part of the cache's settings).
    """
    spec = resolve(name_or_path, seed)
    try:
        root = _root_of(spec, None, home)
    except SoftmoaError:
        config = FeatureConfig(max_length=max_length or spec.max_length, max_seconds=max_seconds)
        fallback = None if spec.location is not None else find_cache(spec.name, config, home)
        if fallback is None:
            raise
        message(f"{spec.name}: audio not installed; using its feature cache {fallback}")
        cache = load_cache(fallback)
    else:
        if prepare:
            started = time.perf_counter()
            cache, built = prepare_cache(name_or_path, max_length=max_length, home=home, seed=seed,
                                         workers=workers or min(4, os.cpu_count() or 1), message=message,
                                         max_seconds=max_seconds)
            if built:
                message(f"prepared {spec.name}: {len(cache)} clips in {time.perf_counter() - started:.0f} s "
                        f"-> {cache.path}")
        else:
            clips = spec.scan(root)
            config = feature_config(spec, root, clips, max_length, max_seconds)
            found = cache_dir(spec.name, home) / cache_key(root, clips, config)
            if not (found / INDEX).is_file():
                raise SoftmoaError(f"{spec.name}: no feature cache for max_length {config.max_length}; "
                                   f"run: softmoa prepare {name_or_path} --max-length {config.max_length}")
            cache = load_cache(found)
    if max_bad is None:
        check_bad(cache)
    else:
        accept_bad(cache, max_bad)
    return cache


def open_dataset(data: DataConfig, message: Callable[[str], None] = lambda text: None) -> FeatureTable:
    """The feature table of a run's ``data`` section, prepared first when missing, its labels held
    for the section's task (``DataConfig.task_of``)."""
    table = open_cache(data.dataset, max_length=data.max_length, message=message, max_bad=data.max_bad,
                       max_seconds=data.max_seconds)
    return table.as_task(data.task_of(table.labels))
