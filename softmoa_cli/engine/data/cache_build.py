"""Building a feature cache (``cache.py`` has its format): worker processes, chunks, resumption,
publication.

A cache is built in ``.<key>.partial/`` beside where it is published, chunk by chunk of clips
(``state.json`` records finished chunks and bad clips, so an interrupted prepare resumes), then
the bad rows are dropped and the folder is renamed into place: readers see a whole cache or
none. A lock file keeps two prepares of one key apart.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..errors import AudioError, SoftmoaError
from ..fsutil import atomic_write_json, atomic_write_text, file_lock
from .cache import EXTRA, FEATURES, FORMAT, INDEX, cache_key, load_cache, settings_of
from .features import MAX_SECONDS, FeatureConfig, frame_count, windows
from .install import installed_root
from .lengths import feature_config, length_advice
from .paths import cache_dir
from .registry import resolve
from .spec import Clips, DatasetSpec
from .table import BAD, FeatureTable

Progress = Callable[[int, int], None]


# --- features of one clip ----------------------------------------------------------------


def clip_windows_and_frames(path: Path, config: FeatureConfig) -> tuple[np.ndarray, int]:
    """Windows of one audio file by the window rule (``features.windows``: its first
    ``config.max_seconds``), float16 ``[windows, *config.window_shape]``, and the number of frames
    they cover; AudioError if unusable."""
    from .audio import load_mono_16k

    wave = load_mono_16k(path, config.sample_rate)
    return windows(wave, config).numpy(), frame_count(wave.numel(), config)


def clip_features(path: Path, config: FeatureConfig) -> np.ndarray:
    """Windows of one audio file by the window rule: float16 ``[windows, *config.window_shape]``;
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


# --- building ----------------------------------------------------------------------------


def _build(root: Path, clips: Clips, config: FeatureConfig, partial: Path, workers: int, chunk: int,
           progress: Progress | None) -> tuple[dict[int, str], dict[int, int], dict[int, int]]:
    """Compute every clip's row in ``partial/features.f16``, resuming finished chunks; returns
    the bad clips ``{row: reason}``, the windows of the long clips ``{row: count}`` and their
    kept frames ``{row: frames}``."""
    shape = (len(clips.paths), *config.window_shape)
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
        shape = (len(clips.paths), *config.window_shape)
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


def _root_of(spec: DatasetSpec, data: Path | None, home: Path | None) -> Path:
    """The data set's root: in ``data``, a copy elsewhere, when given, else its installed one."""
    if data is None:
        return installed_root(spec, home)
    root = spec.find_root(data) if data.is_dir() else None
    if root is None:
        raise SoftmoaError(f"`data` {data}: no {spec.marker} in it or its sub-folders; is this a copy of {spec.title}?")
    return root


def prepare_cache(name_or_path: str | Path, *, max_length: int | None = None, workers: int = 1, home: Path | None = None,
                  data: Path | None = None, seed: int = 0, chunk: int = 64, progress: Progress | None = None,
                  message: Callable[[str], None] = lambda text: None, max_seconds: float = MAX_SECONDS,
                  front_end: FeatureConfig = FeatureConfig()) -> tuple[FeatureTable, bool]:
    """Prepare (or find) the feature cache of a data set; returns ``(cache, built)``.

    ``name_or_path``: a registered data set or a user's folder / manifest. ``max_length``:
    frames (default: the data set's). ``workers``: worker processes. ``data``: a copy of the data
    set elsewhere than ``$SOFTMOA_HOME/data/<name>``. ``seed``: the split of users' data without
    one. ``chunk``: clips per unit of work (and of resumption). ``progress(done, total)`` after
    each chunk. ``max_seconds``: each clip is kept up to its first ``max_seconds`` (another
    bound is another cache). ``front_end``: the backbone's features (``kind``, mel bins,
    normalisation; another front end is another cache). Bad clips are skipped and listed (``cache.bad``); judge them with
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
    config = feature_config(spec, root, clips, max_length, max_seconds, front_end)
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

