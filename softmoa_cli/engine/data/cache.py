"""The feature cache: every clip's features computed once, memory-mapped for training.

A published cache is the folder ``$SOFTMOA_HOME/cache/<name>/<key>/``:

- ``features.f16``: float16 ``[n, max_length, mel_bins]``, C order, raw (``np.memmap``);
- ``index.json``: settings, source fingerprint, label names and per clip path, label, split, fold;
- ``bad.tsv``: the clips that were skipped, with the reason (``path<TAB>reason``).

``key`` is ``L<max_length>-<settings hash>-<sources hash>``: the feature settings (and this
module's ``FORMAT``), and every clip's path, label, split, fold, size and mtime. Changed settings
or sources give a new key, never a silently reused cache. A cache is built in
``.<key>.partial/`` chunk by chunk (``state.json`` records finished chunks and bad clips, so an
interrupted prepare resumes), then the bad rows are dropped and the folder is renamed into
place: readers see a whole cache or none. A lock file keeps two prepares of one key apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..errors import AudioError, SoftmoaError
from ..fsutil import atomic_write_json, atomic_write_text, file_lock
from .download import installed_root
from .features import FeatureConfig
from .paths import cache_dir
from .registry import Clips, DatasetSpec, resolve

FORMAT = 1  # bump when the stored features change meaning
FEATURES = "features.f16"
INDEX = "index.json"
BAD = "bad.tsv"
MIN_SAMPLES = 400  # one 25 ms frame at 16 kHz; shorter clips are zero-padded to it
MAX_BAD = 0.01

Progress = Callable[[int, int], None]


@dataclass
class FeatureCache:
    """A prepared data set, ready for training.

    ``features [n, max_length, mel_bins]`` float16 memory map (normalised log-mel frames);
    ``labels [n]`` int64 ids into ``label_names``; ``split [n]`` 'train' / 'valid' / 'test'
    (k-fold sets: all 'train'); ``fold [n]`` int64, 1..k or 0 when the set has no folds;
    ``paths [n]`` clip paths relative to the data set root; ``bad`` the skipped clips
    ``(path, reason)``; ``listed`` the clips the metadata lists (kept + bad).
    """

    name: str
    path: Path
    features: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    split: np.ndarray
    fold: np.ndarray
    paths: list[str]
    feature_config: FeatureConfig
    bad: list[tuple[str, str]]
    listed: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def report(self) -> Path:
        """The bad clip report ``bad.tsv``."""
        return self.path / BAD


def load_cache(folder: str | Path) -> FeatureCache:
    """Open a published cache folder (memory-maps the features, reads the index)."""
    folder = Path(folder)
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError) as error:
        raise SoftmoaError(f"{folder}: not a feature cache ({error}); run softmoa prepare again") from None
    config = FeatureConfig(**index["settings"]["features"])
    shape = (len(index["labels"]), config.max_length, config.num_mel_bins)
    features = np.memmap(folder / FEATURES, dtype=np.float16, mode="r", shape=shape) if shape[0] else np.zeros(shape, np.float16)
    return FeatureCache(index["name"], folder, features, np.array(index["labels"], dtype=np.int64), index["label_names"],
                        np.array(index["split"], dtype="<U5"), np.array(index["fold"], dtype=np.int64), index["paths"],
                        config, [tuple(row) for row in index["bad"]], index["listed"])


# --- features of one clip ----------------------------------------------------------------


def clip_features(path: Path, config: FeatureConfig) -> np.ndarray:
    """Features of one audio file: float16 ``[max_length, mel_bins]``; AudioError if unusable."""
    import torch

    from .audio import load_mono_16k
    from .features import features

    wave = load_mono_16k(path, config.sample_rate)
    if wave.numel() < MIN_SAMPLES:
        wave = torch.nn.functional.pad(wave, (0, MIN_SAMPLES - wave.numel()))
    return features(wave, config).numpy().astype(np.float16)


def _compute_chunk(job: tuple[str, tuple[int, int, int], int, list[str], FeatureConfig]) -> list[tuple[int, str]]:
    """Fill rows ``start..`` of the features file with the clips ``files``; returns the bad
    ones as ``(row, reason)`` (their rows stay zero). Runs in a worker process."""
    features_path, shape, start, files, config = job
    rows = np.memmap(features_path, dtype=np.float16, mode="r+", shape=shape)
    bad = []
    for offset, file in enumerate(files):
        try:
            rows[start + offset] = clip_features(Path(file), config)
        except AudioError as error:
            rows[start + offset] = 0
            bad.append((start + offset, error.reason))
    rows.flush()
    return bad


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
    for path, label, split, fold in zip(clips.paths, clips.labels.tolist(), clips.split.tolist(), clips.fold.tolist()):
        try:
            info = (root / path).stat()
            size, mtime = info.st_size, info.st_mtime_ns
        except OSError:
            size, mtime = -1, 0
        sources.append((path, clips.label_names[label], split, fold, size, mtime))
    return f"L{config.max_length}-{_digest(settings_of(config))}-{_digest(sources)}"


# --- building ----------------------------------------------------------------------------


def _build(root: Path, clips: Clips, config: FeatureConfig, partial: Path, jobs: int, chunk: int,
           progress: Progress | None) -> dict[int, str]:
    """Compute every clip's row in ``partial/features.f16``, resuming finished chunks; returns
    the bad clips ``{row: reason}``."""
    shape = (len(clips.paths), config.max_length, config.num_mel_bins)
    state_path = partial / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else None
    if state is None:
        partial.mkdir(parents=True, exist_ok=True)
        np.memmap(partial / FEATURES, dtype=np.float16, mode="w+", shape=shape).flush()
        state = {"chunk": chunk, "done": [], "bad": {}}
        atomic_write_json(state_path, state)
    chunk, done = state["chunk"], set(state["done"])
    bad = {int(row): reason for row, reason in state["bad"].items()}
    starts = [s for s in range(0, shape[0], chunk) if s // chunk not in done]
    jobs_list = [(str(partial / FEATURES), shape, s, [str(root / p) for p in clips.paths[s:s + chunk]], config)
                 for s in starts]
    finished = shape[0] - sum(len(job[3]) for job in jobs_list)
    if progress:
        progress(finished, shape[0])

    def record(job, rows_bad):
        nonlocal finished
        bad.update(rows_bad)
        done.add(job[2] // chunk)
        finished += len(job[3])
        atomic_write_json(state_path, {"chunk": chunk, "done": sorted(done), "bad": {str(k): v for k, v in bad.items()}})
        if progress:
            progress(finished, shape[0])

    if jobs <= 1:
        with _one_torch_thread():
            for job in jobs_list:
                record(job, _compute_chunk(job))
    else:
        with ProcessPoolExecutor(jobs, mp_context=_context(), initializer=_single_thread) as pool:
            futures = {pool.submit(_compute_chunk, job): job for job in jobs_list}
            try:
                for future in as_completed(futures):
                    record(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return bad


def _publish(name: str, root: Path, clips: Clips, config: FeatureConfig, key: str, partial: Path,
             bad: dict[int, str], final: Path) -> None:
    """Drop the bad rows, write the index and the report, and rename ``partial`` to ``final``.

    Safe to run again after an interruption: the compacted rows go to ``compact.f16``, the
    state records that they are complete, and only then do they replace the full file.
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
    report = [(clips.paths[i], reason) for i, reason in sorted(bad.items())]
    atomic_write_text(partial / BAD, "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in report))
    atomic_write_json(partial / INDEX, {
        "format": FORMAT, "name": name, "key": key, "root": str(root), "settings": settings_of(config),
        "label_names": clips.label_names, "listed": len(clips.paths), "bad": report,
        "paths": [clips.paths[i] for i in keep], "labels": clips.labels[keep].tolist(),
        "split": clips.split[keep].tolist(), "fold": clips.fold[keep].tolist()})
    os.replace(partial, final)
    (final / "state.json").unlink()


def check_bad(cache: FeatureCache, max_bad: float = MAX_BAD) -> None:
    """SoftmoaError when no clip is usable or the share of bad clips is above ``max_bad``."""
    if not len(cache):
        raise SoftmoaError(f"{cache.name}: none of the {cache.listed} clips could be read; see {cache.report}")
    share = len(cache.bad) / cache.listed
    if share > max_bad:
        raise SoftmoaError(f"{cache.name}: {len(cache.bad)} of {cache.listed} clips are bad ({share:.1%}), above "
                           f"--max-bad {max_bad:.1%}; see {cache.report}, fix or remove them, or raise --max-bad")


def _root_of(spec: DatasetSpec, data: Path | None, home: Path | None) -> Path:
    if data is None:
        return installed_root(spec, home)
    root = spec.find_root(data) if data.is_dir() else None
    if root is None:
        raise SoftmoaError(f"--data {data}: no {spec.marker} in it or its sub-folders; is this a copy of {spec.title}?")
    return root


def prepare_cache(name_or_path: str | Path, *, max_length: int | None = None, jobs: int = 1, home: Path | None = None,
                  data: Path | None = None, seed: int = 0, chunk: int = 64, progress: Progress | None = None,
                  message: Callable[[str], None] = lambda text: None) -> tuple[FeatureCache, bool]:
    """Prepare (or find) the feature cache of a data set; returns ``(cache, built)``.

    ``name_or_path``: a registered data set or a user's folder / manifest. ``max_length``:
    frames (default: the data set's). ``jobs``: worker processes. ``data``: a copy of the data
    set elsewhere than ``$SOFTMOA_HOME/data/<name>``. ``seed``: the split of users' data without
    one. ``chunk``: clips per unit of work (and of resumption). ``progress(done, total)`` after
    each chunk. Bad clips are skipped and listed (``cache.bad``); judge them with ``check_bad``.
    """
    spec = resolve(name_or_path, seed)
    config = FeatureConfig(max_length=max_length or spec.max_length)
    root = _root_of(spec, data, home)
    clips = spec.scan(root)
    if not clips.paths:
        raise SoftmoaError(f"{spec.name}: no clips listed in {root}")
    key = cache_key(root, clips, config)
    folder = cache_dir(spec.name, home)
    final, built = folder / key, False
    with file_lock(folder / f".{key}.lock", message):
        if not (final / INDEX).is_file():
            partial = folder / f".{key}.partial"
            bad = _build(root, clips, config, partial, jobs, chunk, progress)
            _publish(spec.name, root, clips, config, key, partial, bad, final)
            built = True
    return load_cache(final), built


def find_cache(name: str, config: FeatureConfig, home: Path | None = None) -> Path | None:
    """The newest published cache of ``name`` with these settings, whatever its sources."""
    prefix = f"L{config.max_length}-{_digest(settings_of(config))}-"
    folder = cache_dir(name, home)
    found = [p for p in folder.glob(prefix + "*") if (p / INDEX).is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: (p / INDEX).stat().st_mtime, default=None)


def open_cache(name_or_path: str | Path, max_length: int | None = None, prepare: bool = True,
               message: Callable[[str], None] = print, *, home: Path | None = None, jobs: int | None = None,
               seed: int = 0, max_bad: float = MAX_BAD) -> FeatureCache:
    """The feature cache of a data set for training; with ``prepare`` it is built first when
    missing (``jobs`` processes, default up to 4), without it a missing cache is an error.

    When the data set's audio is not installed, the newest cache with the same settings is
    used: training does not need the audio.
    """
    spec = resolve(name_or_path, seed)
    config = FeatureConfig(max_length=max_length or spec.max_length)
    try:
        root = _root_of(spec, None, home)
    except SoftmoaError:
        fallback = None if spec.location is not None else find_cache(spec.name, config, home)
        if fallback is None:
            raise
        message(f"{spec.name}: audio not installed; using its feature cache {fallback}")
        cache = load_cache(fallback)
    else:
        if prepare:
            started = time.perf_counter()
            cache, built = prepare_cache(name_or_path, max_length=config.max_length, home=home, seed=seed,
                                         jobs=jobs or min(4, os.cpu_count() or 1), message=message)
            if built:
                message(f"prepared {spec.name}: {len(cache)} clips in {time.perf_counter() - started:.0f} s "
                        f"-> {cache.path}")
        else:
            found = cache_dir(spec.name, home) / cache_key(root, spec.scan(root), config)
            if not (found / INDEX).is_file():
                raise SoftmoaError(f"{spec.name}: no feature cache for max_length {config.max_length}; "
                                   f"run: softmoa prepare {name_or_path} --max-length {config.max_length}")
            cache = load_cache(found)
    check_bad(cache, max_bad)
    return cache
