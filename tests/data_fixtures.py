"""Tiny copies of every data set layout, written by the tests, and archives of them."""

from __future__ import annotations

import csv
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf


def write_wav(path: Path, seconds: float = 0.25, rate: int = 16_000, channels: int = 1, subtype: str = "PCM_16",
              seed: int = 0) -> Path:
    """A short noisy tone (not silent, so archives do not shrink it much)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    data = np.stack([wave * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype, format="WAV")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_esc50(base: Path) -> Path:
    """``base/ESC-50-master``: 3 categories x 5 folds at 44.1 kHz; returns the root."""
    root = base / "ESC-50-master"
    rows = []
    for target, category in enumerate(["dog", "rain", "clock_tick"]):
        for fold in range(1, 6):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            write_wav(root / "audio" / name, rate=44_100, seed=target * 10 + fold)
            rows.append([name, fold, target, category, target == 0, 100 + target, "A"])
    write_csv(root / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    return root


US8K_FORMATS = {  # file -> (rate, channels, subtype): the mix of the real set
    "100-3-0-0.wav": (44_100, 2, "PCM_24"),
    "101-0-0-1.wav": (11_025, 1, "PCM_U8"),
    "102-1-0-0.wav": (48_000, 1, "FLOAT"),
    "103-3-0-1.wav": (22_050, 2, "PCM_16"),
    "104-0-0-2.wav": (16_000, 1, "PCM_16"),
    "105-1-0-3.wav": (96_000, 1, "PCM_24"),
}


def make_us8k(base: Path) -> Path:
    """``base/UrbanSound8K``: 6 clips of mixed formats over 3 folds, classes 0, 1, 3."""
    root = base / "UrbanSound8K"
    names = {0: "air_conditioner", 1: "car_horn", 3: "dog_bark"}
    rows = []
    for k, (name, (rate, channels, subtype)) in enumerate(US8K_FORMATS.items()):
        fold, class_id = k % 3 + 1, int(name.split("-")[1])
        write_wav(root / "audio" / f"fold{fold}" / name, rate=rate, channels=channels, subtype=subtype, seed=k)
        rows.append([name, name.split("-")[0], 0.0, 0.25, 1, fold, class_id, names[class_id]])
    write_csv(root / "metadata" / "UrbanSound8K.csv",
              ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"], rows)
    return root


SC_WORDS = ["no", "up", "yes"]


def make_speechcommands(base: Path) -> Path:
    """``base`` itself (the real archive has no top folder): 3 words x 4 clips, noise, lists."""
    for w, word in enumerate(SC_WORDS):
        for k in range(4):
            write_wav(base / word / f"spk{k}_nohash_0.wav", seconds=1.0, seed=w * 4 + k)
    write_wav(base / "_background_noise_" / "white_noise.wav", seconds=2.0, seed=99)
    (base / "validation_list.txt").write_text("no/spk1_nohash_0.wav\nyes/spk1_nohash_0.wav\n")
    (base / "testing_list.txt").write_text("no/spk2_nohash_0.wav\nup/spk2_nohash_0.wav\nyes/spk2_nohash_0.wav\n")
    (base / "LICENSE").write_text("CC BY 4.0\n")
    return base


FSC_ROWS = {  # split -> (speaker, file, action, object, location)
    "train": [("s1", "a.wav", "activate", "lights", "kitchen"), ("s1", "b.wav", "increase", "heat", "none"),
              ("s2", "c.wav", "activate", "lights", "kitchen")],
    "valid": [("s3", "d.wav", "increase", "heat", "none")],
    "test": [("s4", "e.wav", "change language", "Chinese", "none"), ("s4", "f.wav", "activate", "lights", "kitchen")],
}


def make_fsc(base: Path) -> Path:
    """``base/fluent_speech_commands_dataset``: 6 utterances, the three CSVs."""
    root = base / "fluent_speech_commands_dataset"
    for split, rows in FSC_ROWS.items():
        table = []
        for k, (speaker, file, action, obj, location) in enumerate(rows):
            path = f"wavs/speakers/{speaker}/{file}"
            write_wav(root / path, seconds=0.5, seed=k)
            table.append([k, path, speaker, f"{action} {obj}", action, obj, location])
        write_csv(root / "data" / f"{split}_data.csv",
                  ["", "path", "speakerId", "transcription", "action", "object", "location"], table)
    return root


def make_archive(folder: Path, archive: Path, top: str | None = None) -> Path:
    """Pack the content of ``folder`` (under the top folder ``top``, if given) as zip or tar.gz."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    names = [(p, f"{top}/{p.relative_to(folder).as_posix()}" if top else p.relative_to(folder).as_posix()) for p in files]
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
            for path, name in names:
                handle.write(path, name)
    else:
        with tarfile.open(archive, "w:gz") as handle:
            for path, name in names:
                handle.add(path, name)
    return archive
