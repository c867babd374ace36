"""The training loader: batches read by worker processes equal those read in the training
process, a run with workers equals one without, each epoch's data wait is logged, SpecAugment
masks as torchaudio did, and training reads a cache larger than the memory it may use."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import _comparable, toy_config, toy_table

from softmoa_cli.engine.data.augment import spec_augment
from softmoa_cli.engine.data.cache import load_cache
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.data.loader import Read, batches
from softmoa_cli.engine.train import finetune


def write_cache(folder: Path, long_clips: int, windows: int, sparse: bool, bins: int = 32, length: int = 48) -> Path:
    """A feature cache written by hand, as ``prepare`` lays one out: ``long_clips`` training clips
    of ``windows`` windows each, then 8 one-window validation and 8 test clips, two classes.
    ``sparse``: the further windows (``extra.f16``) are a file of zeros that takes no disk
    space; else noise."""
    folder.mkdir(parents=True)
    n = long_clips + 16
    labels = np.arange(n) % 2
    split = ["train"] * long_clips + ["valid"] * 8 + ["test"] * 8
    counts = [windows] * long_clips + [1] * 16
    rng = np.random.default_rng(0)
    first = rng.normal(size=(n, length, bins)).astype(np.float16)
    first[labels == 1, :, :4] += 2
    first.tofile(folder / "features.f16")
    extra_rows = long_clips * (windows - 1)
    with open(folder / "extra.f16", "wb") as handle:
        if sparse:
            handle.truncate(extra_rows * length * bins * 2)
        else:
            rng.normal(size=(extra_rows, length, bins)).astype(np.float16).tofile(handle)
    index = {"format": 3, "name": "big", "settings": {"features": asdict(FeatureConfig(num_mel_bins=bins,
                                                                                       max_length=length))},
             "label_names": ["a", "b"], "listed": n, "bad": [], "task": "singlelabel",
             "paths": [f"{k}.wav" for k in range(n)], "labels": [[label] for label in labels.tolist()], "split": split,
             "fold": [0] * n, "windows": counts, "frames": [c * length - length // 3 if c > 1 else length
                                                            for c in counts]}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def test_workers_read_the_batches_the_training_process_reads(tmp_path):
    table = load_cache(write_cache(tmp_path / "cache", long_clips=24, windows=5, sparse=False))
    reads = [Read(np.random.default_rng(k).permutation(40)[:12], 100 + k) for k in range(6)]
    here, forked = list(batches(table, reads, 0)), list(batches(table, reads, 2))
    assert len(here) == len(forked) == 6
    for (x, y), (u, v) in zip(here, forked):
        assert torch.equal(x, u) and torch.equal(y, v)
    crops = table.crop_batch(reads[0].indices, torch.Generator().manual_seed(100))
    assert torch.equal(here[0][0], crops[0]) and here[0][0].shape == (12, 48, 32)


def test_a_run_with_workers_equals_one_without_and_logs_the_data_wait(tmp_path):
    _, alone = finetune(toy_config("soft", epochs=1), tmp_path / "alone", table=toy_table())
    _, helped = finetune(toy_config("soft", epochs=1, workers=2), tmp_path / "helped", table=toy_table())
    assert _comparable(helped)["folds"] == _comparable(alone)["folds"]
    rows = list(csv.DictReader(open(tmp_path / "helped" / "log.csv")))
    assert len(rows) == 1 and all(0 <= float(row["data_wait"]) < float(row["seconds"]) for row in rows)


def torchaudio_spec_augment(x: torch.Tensor, freq_mask: int, time_mask: int, generator: torch.Generator):
    """SpecAugment as softmoa drew it before the loader: torchaudio's transforms on the global RNG."""
    from torchaudio.transforms import FrequencyMasking, TimeMasking

    image = x.transpose(1, 2).unsqueeze(1)  # [b, 1, bins, frames]
    torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
    if freq_mask:
        image = FrequencyMasking(freq_mask, iid_masks=True)(image)
    if time_mask:
        image = TimeMasking(time_mask, iid_masks=True)(image)
    return image.squeeze(1).transpose(1, 2)


@pytest.mark.parametrize(("freq", "time"), [(6, 0), (0, 10), (24, 48), (1, 1)])
def test_spec_augment_masks_as_torchaudio_and_leaves_the_global_rng_alone(freq, time):
    for seed in range(5):
        x = torch.randn(8, 48, 32)
        state = torch.get_rng_state()
        ours = spec_augment(x, freq, time, torch.Generator().manual_seed(seed))
        assert torch.equal(torch.get_rng_state(), state)
        assert torch.equal(ours, torchaudio_spec_augment(x, freq, time, torch.Generator().manual_seed(seed)))
        torch.set_rng_state(state)


LIMITED = """
import json, resource, sys
sys.path.insert(0, {tests!r})
import numpy as np
from helpers import toy_config
from softmoa_cli.engine.data.cache import load_cache
from softmoa_cli.engine.train import finetune

def data_bytes():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmData"))

limit = data_bytes() + {headroom}
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
table = load_cache(sys.argv[1])
size = table.extra.nbytes + table.features.nbytes
try:
    np.ones(size, dtype=np.uint8)  # the data set in RAM: more than this process may hold
    fits = True
except MemoryError:
    fits = False
run, metrics = finetune(toy_config("soft", epochs=1, batch_size=8, workers=2, threads=1), sys.argv[2], table=table)
json.dump({{"limit": limit, "size": size, "fits": fits, "test": metrics.to_dict()["folds"]["all"]["test"]}}, open(sys.argv[3], "w"))
"""


def test_training_reads_a_cache_larger_than_the_memory_it_may_use(tmp_path):
    """Under RLIMIT_DATA of what the imports took plus 512 MiB (about 1.4 GiB here), a 1.6 GiB
    cache (a sparse file: no disk) trains for an epoch, with worker processes; holding the data
    set in RAM fails there."""
    cache = write_cache(tmp_path / "cache", long_clips=40, windows=14_000, sparse=True)  # 40 x 14,000 x 3 KiB
    script = tmp_path / "limited.py"
    script.write_text(LIMITED.format(tests=str(Path(__file__).parent), headroom=512 << 20))
    out = tmp_path / "out.json"
    done = subprocess.run([sys.executable, str(script), str(cache), str(tmp_path / "run"), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert found["size"] > found["limit"] and not found["fits"]
    assert found["test"]["clips"] == 8
