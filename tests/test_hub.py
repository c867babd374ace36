"""Runs on the Hugging Face Hub: push (--dry-run writes what would be uploaded; a push creates
the repo and uploads that folder, recorded here instead of reaching the network), and a pushed
run read back by its hub id from a local hub cache, offline, wherever a run is taken."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import random_hf_model, run, toy_config, toy_table

from softmoa_cli.engine.train import finetune
from helpers import load_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SHARED_TOY_FILES = ["README.md", "backbone/model.safetensors", "backbone/softmoa.json", "config.yaml",
                    "fold-1/adapter.json", "fold-1/adapter.safetensors", "fold-2/adapter.json",
                    "fold-2/adapter.safetensors", "fold-3/adapter.json", "fold-3/adapter.safetensors", "log.csv",
                    "metrics.json", "run.json"]


def files_under(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def into_hub_cache(folder: Path, cache: Path, repo_id: str) -> Path:
    """Lay ``folder`` out as huggingface_hub's cache holds a downloaded repo (blobs, a snapshot
    of links to them, refs/main); returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for name in files_under(folder):
        data = (folder / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty local hub cache, offline: huggingface_hub reads nothing else."""
    import huggingface_hub.constants as hub

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def toy_run(tmp_path):
    """A finished 3-fold adapter run of a random backbone (kept in the run folder), with what
    must not travel planted beside it: a resume state, a confusion matrix and a cache."""
    folder, _ = finetune(toy_config("adapter", epochs=1), tmp_path / "toy-adapter", table=toy_table(n=96, folds=3))
    (folder / "fold-1" / "state.pt").write_bytes(b"resume state")
    (folder / "confusion-test.png").write_bytes(b"png")
    (folder / "cache").mkdir()
    (folder / "cache" / "features.f16").write_bytes(b"features")
    return folder


def test_push_dry_run_writes_the_card_and_files_and_no_resume_state(toy_run, tmp_path):
    staged = tmp_path / "staged"
    result = run("push", toy_run, "me/toy-adapter", "--dry-run", staged)
    assert result.exit_code == 0, result.output
    assert files_under(staged) == SHARED_TOY_FILES and "nothing uploaded" in result.stdout
    card = (staged / "README.md").read_text()
    assert "softmoa predict clip.wav --run me/toy-adapter" in card and "# toy-adapter" in card
    assert (staged / "fold-1" / "adapter.safetensors").read_bytes() == (
        toy_run / "fold-1" / "adapter.safetensors").read_bytes()

    again = run("push", toy_run, "me/toy-adapter", "--dry-run", staged)
    assert again.exit_code == 2 and "not an empty folder" in again.stderr and len(again.stderr.splitlines()) == 1
    bad_id = run("push", toy_run, "not a repo", "--dry-run", tmp_path / "other")
    assert bad_id.exit_code == 2 and "owner/name" in bad_id.stderr


def test_push_creates_the_repo_and_uploads_the_staged_folder(toy_run, monkeypatch):
    from huggingface_hub import HfApi

    calls = []

    def create_repo(self, repo_id, **options):
        calls.append(("create_repo", repo_id, options))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **options):
        calls.append(("upload_folder", options["repo_id"], files_under(Path(options["folder_path"]))))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    result = run("push", toy_run, "me/toy-adapter", "--private")
    assert result.exit_code == 0, result.output
    assert calls == [("create_repo", "me/toy-adapter", {"exist_ok": True, "private": True}),
                     ("upload_folder", "me/toy-adapter", SHARED_TOY_FILES)]
    assert "pushed 13 files to https://huggingface.co/me/toy-adapter" in result.stdout


def test_an_unfinished_run_is_not_pushed(toy_run, tmp_path):
    described = json.loads((toy_run / "run.json").read_text())
    (toy_run / "run.json").write_text(json.dumps(described | {"finished": False}))
    result = run("push", toy_run, "me/toy-adapter", "--dry-run", tmp_path / "staged")
    assert result.exit_code == 2 and "has not finished" in result.stderr and not (tmp_path / "staged").exists()


def test_a_pushed_run_loads_offline_by_its_hub_id(tmp_path, monkeypatch, hub_cache, fsdd_recordings):
    """A Soft-MoA run on real FSDD clips, staged by push --dry-run into the hub cache: predict,
    embed, evaluate and analyze by its hub id give what they give on the run folder."""
    for digit in range(3):
        for path in sorted(fsdd_recordings.glob(f"{digit}_*.wav"))[:6]:
            (tmp_path / "digits" / f"d{digit}").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tmp_path / "digits" / f"d{digit}" / path.name)
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "tiny.yaml"
    preset.write_text("model:\n  checkpoint: random\n  random: {dim: 32, depth: 1, heads: 2, mlp_dim: 64}\n")
    trained = run("finetune", "--dataset", tmp_path / "digits", "--preset", preset, "--method", "soft", "--experts",
                  "2", "--epochs", "1", "--batch-size", "8", "--max-length", "50", "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    assert run("push", tmp_path / "run", "me/digits-soft", "--dry-run", tmp_path / "staged").exit_code == 0
    into_hub_cache(tmp_path / "staged", hub_cache, "me/digits-soft")
    clip = sorted((tmp_path / "digits" / "d1").iterdir())[0]

    for by in (tmp_path / "run", "me/digits-soft"):
        predicted = run("predict", clip, "--run", by, "--json")
        assert predicted.exit_code == 0, predicted.output
        embedded = run("embed", clip, "--run", by, "--out", tmp_path / "clip.npz")
        assert embedded.exit_code == 0, embedded.output
        data = [] if by != "me/digits-soft" else ["--dataset", tmp_path / "digits"]  # a local data set: not pushed
        evaluated = run("evaluate", by, "--json", *data)
        assert evaluated.exit_code == 0, evaluated.output
        analyzed = run("analyze", by, "--json", *data)
        assert analyzed.exit_code == 0, analyzed.output
        if by != "me/digits-soft":
            local = predicted.stdout, json.loads(evaluated.stdout), json.loads(analyzed.stdout)
    assert predicted.stdout == local[0]
    assert json.loads(evaluated.stdout)["folds"] == local[1]["folds"]
    assert json.loads(analyzed.stdout)["layers"] == local[2]["layers"]
    # what the commands make for a hub run goes beside the runs, never into the hub cache
    assert sorted(p.name for p in (tmp_path / "runs" / "hub" / "me--digits-soft").iterdir()) == [
        "confusion-test.png", "experts.json", "experts.png"]


def test_a_run_that_is_neither_a_folder_nor_a_cached_hub_id_is_one_clear_line(tmp_path, hub_cache, fsdd_clips):
    for args in (["evaluate", "me/missing"], ["analyze", "me/missing"],
                 ["predict", fsdd_clips[0], "--run", "me/missing"]):
        result = run(*args)
        assert result.exit_code == 2, result.output
        [line] = result.stderr.splitlines()
        assert "me/missing" in line and "HF_HUB_OFFLINE" in line and "hub id of a pushed run" in line
    missing = run("evaluate", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "no such run folder" in missing.stderr


def test_a_full_fine_tune_serves_by_its_hub_id_as_a_backbone(tmp_path, hub_cache):
    table = toy_table(n=80)
    full, _ = finetune(toy_config("full", epochs=1), tmp_path / "full", table=table)
    assert run("push", full, "me/toy-full", "--dry-run", tmp_path / "staged").exit_code == 0
    into_hub_cache(tmp_path / "staged", hub_cache, "me/toy-full")
    config = toy_config("linear", epochs=1).model_copy(update={"model": toy_config().model.model_copy(
        update={"checkpoint": "me/toy-full"})})
    folder, _ = finetune(config, tmp_path / "on-full", table=table)
    assert json.loads((folder / "adapter.json").read_text())["backbone"] == "me/toy-full"
    assert load_run(folder)[1] == table.label_names


def test_a_backbone_from_a_hub_cache_folder_is_stored_by_its_hub_id(tmp_path, hub_cache):
    random_hf_model(tmp_path / "hf-model", num_mel_bins=32, max_length=48)
    snapshot = into_hub_cache(tmp_path / "hf-model", hub_cache, "someone/tiny-ast")
    config = toy_config("linear", epochs=1)
    config = config.model_copy(update={"model": config.model.model_copy(update={"checkpoint": str(snapshot)})})
    folder, _ = finetune(config, tmp_path / "run", table=toy_table(n=80))
    assert json.loads((folder / "adapter.json").read_text())["backbone"] == "someone/tiny-ast"
    assert "base_model: someone/tiny-ast" in (folder / "README.md").read_text()
    assert load_run(folder)[1] == ["class0", "class1", "class2", "class3"]


def test_a_run_on_a_local_backbone_says_it_must_be_there(toy_run, tmp_path):
    config = toy_config("linear", epochs=1)
    local = str((toy_run / "backbone").resolve())
    config = config.model_copy(update={"model": config.model.model_copy(update={"checkpoint": local})})
    folder, _ = finetune(config, tmp_path / "on-local", table=toy_table(n=80))
    result = run("push", folder, "me/on-local", "--dry-run", tmp_path / "staged")
    assert result.exit_code == 0, result.output
    assert f"the backbone is a local folder ({local})" in result.stderr.replace("\n", "")
    assert "backbone" not in {path.split("/")[0] for path in files_under(tmp_path / "staged")}
    card = (tmp_path / "staged" / "README.md").read_text()
    assert local not in card and "needs a copy of it named `backbone` beside `adapter.json`" in card
    assert "randomly initialised" not in card
    assert json.loads((tmp_path / "staged" / "run.json").read_text())["backbone_local"] is True


def test_a_pushed_run_carries_no_local_paths_and_asks_for_its_local_data_set(tmp_path, monkeypatch):
    from helpers import write_wav

    for c, name in enumerate(("low", "high")):
        for k in range(6):
            write_wav(tmp_path / "private" / "birds" / name / f"{k}.wav", seconds=0.2, seed=10 * c + k)
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    preset = tmp_path / "private" / "tiny.yaml"
    preset.write_text("model:\n  checkpoint: random\n  random: {dim: 32, depth: 1, heads: 2, mlp_dim: 64}\n")
    data, folder = tmp_path / "private" / "birds", tmp_path / "private" / "runs" / "birds-linear"
    trained = run("finetune", "--dataset", data, "--preset", preset, "-m", "linear", "--epochs", "1",
                  "--batch-size", "4", "--max-length", "20", "--out", folder)
    assert trained.exit_code == 0, trained.output
    staged = tmp_path / "staged"
    pushed = run("push", folder, "me/birds-linear", "--dry-run", staged)
    assert pushed.exit_code == 0, pushed.output
    private = str(tmp_path / "private")
    for name in files_under(staged):
        if not name.endswith(".safetensors"):
            assert private not in (staged / name).read_text(), name
    shared = json.loads((staged / "run.json").read_text())
    assert shared["dataset"] == "birds" and shared["dataset_local"] is True and "backbone_local" not in shared
    assert shared["command"] == ("softmoa finetune --dataset birds --preset tiny.yaml --method linear --max-length 20 "
                                 "--epochs 1 --batch-size 4 --out birds-linear")
    assert "softmoa evaluate me/birds-linear --dataset PATH/TO/birds" in (staged / "README.md").read_text()
    refused = run("evaluate", staged)
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "local data set (birds)" in refused.stderr and "--dataset PATH" in refused.stderr
    scored = run("evaluate", staged, "--dataset", data, "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["summary"]["accuracy_mean"] == pytest.approx(
        json.loads((folder / "metrics.json").read_text())["summary"]["accuracy_mean"])


def test_exports_name_their_run_without_its_path(toy_runs, tmp_path):
    from softmoa_cli.engine.export import export_run

    export_run(toy_runs["adapter"], "standalone", tmp_path / "standalone")
    saved = json.loads((tmp_path / "standalone" / "softmoa.json").read_text())
    assert saved["extra"]["run"] == "adapter" and str(tmp_path.parent) not in json.dumps(saved)
