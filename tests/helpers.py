"""Plain helpers shared by the tests, imported as ``from helpers import ...`` (fixtures live in
conftest.py; see its docstring for the rule): the CLI in-process, tiny AST configs and random
transformers models, toy feature tables and runs with a kill callback, runs with random trained
tensors (``random_run``), tiny copies of every data set layout with archives of them, and
multi-label mixtures of known sounds."""

from __future__ import annotations

import csv
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from softmoa_cli.cli.app import build_app
from softmoa_cli.engine.config import build_config
from softmoa_cli.engine.data.features import FeatureConfig
from softmoa_cli.engine.data.table import FeatureTable
from softmoa_cli.engine.train import Callback

# --- the CLI ----------------------------------------------------------------------------------


def run(*args):
    """``softmoa ARGS...`` in-process (each argument through str()); the click Result."""
    return CliRunner().invoke(build_app(), [str(a) for a in args])


def run_ok(*args):
    """``run``, asserting that the command exited 0 (its output as the message otherwise)."""
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


# --- models -----------------------------------------------------------------------------------


def tiny_ast_config(**changes):
    """A 2-block, 64-wide AST over 100 frames: fast enough for every test."""
    from softmoa_cli.engine.models.ast import ASTConfig

    base = dict(dim=64, depth=2, heads=4, mlp_dim=128, max_length=100, num_classes=5)
    return ASTConfig(**(base | changes))


def random_hf_model(folder: Path, **config):
    """A transformers AST (2 blocks, 64 wide, 100 frames, labels class0..class4; ``config`` overrides
    any of it) with weights large enough that every layer matters (all N(0, 0.2)), saved to
    ``folder``; returns (model, folder)."""
    import transformers

    hf_config = transformers.ASTConfig(**(dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                               intermediate_size=128, max_length=100, num_labels=5,
                                               id2label={i: f"class{i}" for i in range(5)}) | config))
    return saved_hf_model(transformers.ASTForAudioClassification, hf_config, folder,
                          lambda name, param: param.normal_(0, 0.2))


def scaled_hf_model(model_class, hf_config, folder: Path):
    """``model_class(hf_config)`` (a transformers model) with weights drawn so that every layer
    matters and the output depends on the input, saved to ``folder``: matrices and kernels
    N(0, 1/fan_in), norm scales N(1, 0.2), other vectors N(0, 0.2). (All N(0, 0.2), as for the
    AST, would shrink the signal at each of the many norms of a conv stack or a post-LN encoder
    until the outputs hardly depend on the input.) Returns (model, folder)."""
    import math

    def draw(name, param):
        if param.dim() == 1 and "norm" in name and name.endswith("weight"):
            param.normal_(1, 0.2)
        elif param.numel() == param.shape[-1]:  # a vector, or a weight norm's gains [1, 1, kernel]
            param.normal_(0, 0.2)
        else:
            param.normal_(0, 1 / math.sqrt(param[0].numel()))

    return saved_hf_model(model_class, hf_config, folder, draw)


def saved_hf_model(model_class, hf_config, folder: Path, draw):
    """``model_class(hf_config)`` in eval mode, each parameter redrawn in place by ``draw(name,
    param)`` (seed 0), saved to ``folder``; returns (model, folder)."""
    import torch

    torch.manual_seed(0)
    model = model_class(hf_config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            draw(name, param)
    model.save_pretrained(folder)
    return model, folder


def assert_meaningful(reference) -> None:
    """A reference output ``[b, ...]`` (b >= 2) that a comparison at 1e-4 cannot match trivially:
    not near zero, and different for different inputs (its first two examples differ)."""
    assert reference.abs().max() > 0.5, "near-zero reference"
    assert (reference[0] - reference[1]).abs().max() > 0.1, "the reference hardly depends on the input"


def largest_difference(got, expected) -> float:
    """max |got - expected| of two tensors of the same shape, asserting that shape."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    return (got - expected).abs().max().item()


# --- toy features, runs and kills -------------------------------------------------------------

TINY = {"dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64}


def toy_table(n: int = 160, classes: int = 4, folds: int = 0, seed: int = 0) -> FeatureTable:
    """Noise with a class-specific band of energy: learnable in a few steps. The last 40 clips
    are the test split, or, with ``folds``, clips are dealt round-robin into folds."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.normal(size=(n, 48, 32)).astype(np.float32) * 0.5
    for c in range(classes):
        x[labels == c, :, 6 * c:6 * c + 4] += 1.5
    split = np.array(["train"] * n, dtype=object)
    fold = np.zeros(n, dtype=np.int64)
    if folds:
        fold = (np.arange(n) // classes) % folds + 1
    else:
        split[-40:] = "test"
    return FeatureTable("toy", x.astype(np.float16), labels, [f"class{i}" for i in range(classes)], split, fold,
                        FeatureConfig(num_mel_bins=32, max_length=48))


def toy_config(method: str = "soft", data: dict | None = None, **training):
    """A run of a TINY random AST on the toy table: 2 epochs at batch 16, a checkpoint every 4 steps."""
    options = {"experts": 3} if method in ("soft", "dense") else {}
    return build_config({"data": {"dataset": "toy", **(data or {})}, "model": {"checkpoint": "random", "random": TINY},
                         "method": {"name": method, **options},
                         "training": {"epochs": 2, "batch_size": 16, "resume_every": 4, "seed": 3} | training})


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def random_run(folder: Path, method: dict, seed: int, backbone: str = "embedded", max_length: int = 100,
               command: str | None = None) -> Path:
    """A finished run of ``method`` (its config as a dict) on ``backbone`` (``embedded`` or a
    model folder) over the ten FSDD digits, written as ``softmoa finetune`` writes one but with
    random trained tensors: adapters and LoRA pairs N(0, 0.05), the norms they train N(1, 0.1),
    the head N(0, 0.5) (every task routes its own norms and answers differently). No training:
    serving costs the same whatever the values. ``command``: what the run records as its
    command (``benchmarks/serve_bench.py`` writes its runs here too)."""
    import torch

    from softmoa_cli.engine.petl.adapter_files import AdapterInfo, save_adapter, trainable_tensors
    from softmoa_cli.engine.petl.build import build_model
    from softmoa_cli.engine.petl.methods import with_backbone_defaults
    from softmoa_cli.engine.runs.folder import RunFolder
    from softmoa_cli.engine.runs.run import load_backbone
    from softmoa_cli.engine.task import SINGLE

    pretrained = load_backbone(backbone)
    config = build_config({"data": {"dataset": "fsdd", "max_length": max_length}, "model": {"checkpoint": backbone},
                           "method": method})
    method_config, _ = with_backbone_defaults(config.method, pretrained.model.config.dim)
    model = build_model(pretrained, method_config, len(DIGITS), max_length)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                noise = torch.randn(param.shape, generator=generator)
                param.copy_(1 + 0.1 * noise if "norm" in name and name.endswith("weight")
                            else (0.5 if name.startswith("head") else 0.05) * noise)
    run = RunFolder(folder)
    run.start(config.model_copy(update={"method": method_config}), [None], backbone, SINGLE, command)
    save_adapter(folder, trainable_tensors(model), AdapterInfo(
        backbone, method_config.model_dump(mode="json"), DIGITS, FeatureConfig(max_length=max_length), SINGLE))
    run.finish()
    return folder


class Kill(Exception):
    """What KillAt raises: a kill of the process, as the training loop sees it."""


class KillAt(Callback):
    """Records the folds that start (``started``) and counts the steps of this run (``steps``);
    raises Kill at the ``at``-th step, as a kill would (after the last checkpoint), unless None."""

    def __init__(self, at: int | None):
        self.at, self.steps, self.started = at, 0, []

    def fold_start(self, fold, *args):
        self.started.append(fold)

    def step(self, info):
        self.steps += 1
        if self.steps == self.at:
            raise Kill


def _comparable(metrics) -> dict:
    """Metrics (``RunMetrics`` or its dict) without wall-clock times (an epoch's seconds and data
    wait, a fold's training time)."""
    text = json.dumps(metrics if isinstance(metrics, dict) else metrics.to_dict(), sort_keys=True)
    clean = json.loads(text)
    for fold in clean["folds"].values():
        for epoch in fold["epochs"]:
            epoch.pop("seconds")
            epoch.pop("data_wait", None)
        fold["test"].pop("train_seconds")
    return clean


# --- tiny copies of every data set layout -----------------------------------------------------


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


FSD50K_VOCABULARY = ["Rain", "Bark", "Speech", "Accordion", "Electric_guitar"]  # index order, not sorted
FSD50K_ROWS = {  # file -> (label set, split in the release: train / val for dev, None for eval)
    "dev/64760": ("Electric_guitar,Speech", "train"), "dev/1001": ("Bark", "train"),
    "dev/1002": ("Rain,Bark", "train"), "dev/1003": ("Speech", "val"),
    "dev/1004": ("Accordion,Rain,Speech", "val"),
    "eval/37199": ("Bark,Rain", None), "eval/37200": ("Accordion", None), "eval/37201": ("Electric_guitar", None),
}


def make_fsd50k(base: Path) -> Path:
    """``base/FSD50K``: the extracted release with a 5-label vocabulary (no header, as the real
    one), 5 dev clips (3 train, 2 val), 3 eval clips, 44.1 kHz mono; dev clip 1002 lasts 12 s
    (two windows of 1024 frames). Returns the root."""
    root = base / "FSD50K"
    truth = root / "FSD50K.ground_truth"
    truth.mkdir(parents=True)
    with open(truth / "vocabulary.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([k, name, f"/m/0{k}x"] for k, name in enumerate(FSD50K_VOCABULARY))
    mids = {name: f"/m/0{k}x" for k, name in enumerate(FSD50K_VOCABULARY)}
    tables = {"dev": [], "eval": []}
    for k, (file, (labels, split)) in enumerate(FSD50K_ROWS.items()):
        part, fname = file.split("/")
        write_wav(root / f"FSD50K.{part}_audio" / f"{fname}.wav", seconds=12.0 if fname == "1002" else 0.4,
                  rate=44_100, seed=k)
        row = [fname, labels, ",".join(mids[name] for name in labels.split(","))]
        tables[part].append(row + ([split] if split else []))
    write_csv(truth / "dev.csv", ["fname", "labels", "mids", "split"], tables["dev"])
    write_csv(truth / "eval.csv", ["fname", "labels", "mids"], tables["eval"])
    return root


# --- multi-label mixtures ---------------------------------------------------------------------

MIXTURE_RATE = 16_000
MIXTURE_SOURCES = {"low": 250, "mid": 700, "high": 1800, "top": 4000, "hiss": None}  # tone in Hz, or noise 6-7.5 kHz


def mixture_sound(name: str, rng: np.random.Generator, samples: int) -> np.ndarray:
    """One source at unit peak: a slightly detuned tone, or band-limited noise."""
    if MIXTURE_SOURCES[name] is None:
        spectrum = np.fft.rfft(rng.standard_normal(samples))
        frequencies = np.fft.rfftfreq(samples, 1 / MIXTURE_RATE)
        spectrum[(frequencies < 6000) | (frequencies > 7500)] = 0
        wave = np.fft.irfft(spectrum, samples)
        return wave / np.abs(wave).max()
    t = np.arange(samples) / MIXTURE_RATE
    return np.sin(2 * np.pi * MIXTURE_SOURCES[name] * (1 + 0.02 * rng.standard_normal()) * t
                  + rng.uniform(0, 2 * np.pi))


def write_mixtures(root: Path, clips: int = 160, seconds: float = 0.5, seed: int = 0) -> Path:
    """``root/mixtures.csv`` (path, labels, split) over ``root/mix/*.wav``: each clip mixes one to
    three of ``MIXTURE_SOURCES`` at random levels over faint noise; the first 60 % of the clips
    train, the next 20 % validate, the last 20 % test. Returns the manifest."""
    rng = np.random.default_rng(seed)
    rows, samples = [], int(seconds * MIXTURE_RATE)
    for k in range(clips):
        names = sorted(rng.choice(list(MIXTURE_SOURCES), size=rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]),
                                  replace=False))
        wave = sum(rng.uniform(0.1, 0.3) * mixture_sound(name, rng, samples) for name in names)
        wave = wave + 0.02 * rng.standard_normal(samples)
        path = root / "mix" / f"{k:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wave.astype(np.float32), MIXTURE_RATE, subtype="PCM_16")
        split = "train" if k < 0.6 * clips else "valid" if k < 0.8 * clips else "test"
        rows.append([f"mix/{k:03d}.wav", ";".join(names), split])
    write_csv(root / "mixtures.csv", ["path", "labels", "split"], rows)
    return root / "mixtures.csv"


TABLE = ("│", "┃", "━━")  # marks a line of a rich table in captured output


def table_lines(text: str) -> list[str]:
    """The lines of captured output that belong to a rich table."""
    return [line for line in text.splitlines() if any(mark in line for mark in TABLE)]


def load_run(run_dir, fold=None):
    """A finished run's model, labels and features (``Run.open(run_dir).classifier(fold)``, as a tuple)."""
    from softmoa_cli.engine.runs.run import Run

    classifier = Run.open(run_dir).classifier(fold)
    return classifier.model, classifier.labels, classifier.features


def adapter_task(directory):
    """``(multi-label?, thresholds)`` of a fold's adapter files."""
    from softmoa_cli.engine.petl.adapter_files import AdapterInfo
    from softmoa_cli.engine.task import MULTI

    info = AdapterInfo.read(directory)
    return info.task is MULTI, info.thresholds
