"""softmoa export: the ONNX graph of every method gives the run's
logits under onnxruntime on real FSDD features, with a dynamic batch; the standalone folder
predicts as the run does without the run or its backbone; the README's onnxruntime snippet
gives predict's scores; bad runs, formats and folders are one error line and exit code 2; a
failed check leaves nothing behind; a k-fold run exports the fold asked for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softmoa_cli.engine.task import MULTI
from helpers import run, run_ok, table_lines, toy_config, toy_table
from softmoa_cli.engine.data.audio import load_mono_16k
from softmoa_cli.engine.data.features import FeatureConfig, windows
from softmoa_cli.engine.export import export_run
from softmoa_cli.engine.models.pretrained import load_pretrained
from softmoa_cli.engine.predict import predictor_for
from softmoa_cli.engine.train import finetune
from helpers import load_run

METHODS = ["linear", "full", "adapter", "dense", "soft", "lora"]
README = Path(__file__).resolve().parents[1] / "README.md"


def fsdd_features(clips: list[Path], features: FeatureConfig) -> torch.Tensor:
    """Every window of the clips by the window rule, as predict feeds them: ``[windows, frames, bins]``."""
    return torch.cat([windows(load_mono_16k(clip), features) for clip in clips]).float()


def onnx_logits(folder: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    meta = json.loads((folder / "model.json").read_text())
    session = onnxruntime.InferenceSession(str(folder / meta["model"]), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run([meta["output"]["name"]], {meta["input"]["name"]: x.numpy()})[0])


@pytest.mark.parametrize("method", METHODS)
def test_the_onnx_graph_gives_the_runs_logits_on_fsdd_features(method, toy_runs, fsdd_clips, tmp_path):
    exported = export_run(toy_runs[method], "onnx", tmp_path / "onnx")
    assert [name for name, _ in exported.files] == ["model.json", "model.onnx"]
    assert exported.merged == (4 if method == "lora" else 0)  # q and v of 2 blocks
    model, labels, features = load_run(toy_runs[method])
    x = fsdd_features(fsdd_clips, features)
    assert len(x) > 4  # some clips are longer than the 48-frame window
    with torch.inference_mode():
        expected = model(x)
    for batch in (x[:1], x):  # the batch axis is dynamic
        assert (onnx_logits(exported.folder, batch) - expected[:len(batch)]).abs().max() <= 1e-4
    meta = json.loads((exported.folder / "model.json").read_text())
    assert meta["labels"] == labels and meta["input"]["shape"] == ["batch", 48, 32]
    assert meta["task"] == {"kind": "singlelabel", "scores": "softmax", "thresholds": None}
    assert meta["source"]["method"]["name"] == method and meta["check"]["max_abs_logit_difference"] <= 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_the_standalone_folder_predicts_as_the_run_without_it(method, toy_runs, fsdd_clips, tmp_path):
    copy = shutil.copytree(toy_runs[method], tmp_path / "run")  # its random backbone is inside the run
    exported = export_run(copy, "standalone", tmp_path / "standalone")
    shutil.rmtree(copy)
    pretrained = load_pretrained(exported.folder)
    assert (pretrained.method or {}).get("name") == (method if method in ("adapter", "dense", "soft") else None)
    from_run = predictor_for(run=toy_runs[method])
    standalone = predictor_for(checkpoint=str(exported.folder))
    assert standalone.features == from_run.features and standalone.labels == from_run.labels
    for ours, theirs in zip(standalone.predict_files(fsdd_clips), from_run.predict_files(fsdd_clips)):
        if method == "lora":  # merged into the weights: the same function up to float rounding
            torch.testing.assert_close(ours.scores, theirs.scores, rtol=0, atol=1e-6)
        else:
            assert torch.equal(ours.scores, theirs.scores)


def test_export_and_predict_from_the_command_line(toy_runs, fsdd_clips, tmp_path, columns_80):
    out = tmp_path / "soft-standalone"
    result = run_ok("export", toy_runs["soft"], "--format", "standalone", "--out", out)
    assert {line.split()[0] for line in table_lines(result.stdout)[2:]} == {"model.safetensors", "softmoa.json"}
    assert f"soft model of {toy_runs['soft']} -> {out}" in result.stdout
    assert re.search(r"largest \|logit difference\| 0\.0e\+00 \(allowed 1e-04\)", result.stdout), result.stdout
    by_run = json.loads(run_ok("predict", *fsdd_clips, "--run", toy_runs["soft"], "--json").stdout)
    by_folder = json.loads(run_ok("predict", *fsdd_clips, "--checkpoint", out, "--json").stdout)
    assert by_folder == by_run


def readme_snippet() -> str:
    """The Python block of the README's Export section."""
    section = README.read_text().split("### Export")[1].split("\n### ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Export section should hold one Python block"
    return blocks[0]


def test_the_readme_snippet_scores_a_wav_as_predict_does(toy_runs, fsdd_clips, tmp_path):
    folder = export_run(toy_runs["soft"], "onnx", tmp_path / "onnx").folder
    script = tmp_path / "score.py"
    script.write_text(readme_snippet())
    clip = fsdd_clips[2]  # 7_nicolas_5: several 48-frame windows
    done = subprocess.run([sys.executable, str(script), str(folder), str(clip)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    printed = [line.split("\t") for line in done.stdout.splitlines()]
    predicted = json.loads(run_ok("predict", clip, "--run", toy_runs["soft"], "--json").stdout)[0]["predictions"]
    assert [label for label, _ in printed] == [p["label"] for p in predicted]
    for (_, score), p in zip(printed, predicted):
        assert abs(float(score) - p["score"]) <= 1e-5


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such run folder"),
    ("not a run", "not a softmoa run folder"),
    ("unfinished", "training has not finished"),
    ("no such fold", "no fold 7; the run has folds [None]"),
    ("format", "--format: unknown export format 'tflite'; choose one of: onnx, standalone"),
    ("out taken", "already exists and is not an empty folder"),
])
def test_bad_runs_formats_and_folders_are_one_line_and_exit_code_2(case, message, toy_runs, tmp_path):
    run_dir, options = toy_runs["linear"], ["--format", "standalone"]
    out = tmp_path / "out"
    if case == "missing":
        run_dir = tmp_path / "no-such-run"
    elif case == "not a run":
        run_dir = tmp_path / "plain"
        run_dir.mkdir()
    elif case == "unfinished":
        run_dir = shutil.copytree(toy_runs["linear"], tmp_path / "unfinished")
        (run_dir / "adapter.safetensors").unlink()
    elif case == "no such fold":
        options += ["--fold", "7"]
    elif case == "format":
        options = ["--format", "tflite"]
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    line = one_error_line(run("export", run_dir, *options, "--out", out))
    assert message in line
    assert (out / "keep.txt").read_text() == "mine" if case == "out taken" else not out.exists()


def test_a_failed_check_leaves_nothing_behind(toy_runs, tmp_path, monkeypatch):
    from softmoa_cli.engine.export import check

    monkeypatch.setattr(check, "TOLERANCE", -1.0)  # no export can pass
    line = one_error_line(run("export", toy_runs["adapter"], "--out", tmp_path / "out"))
    assert "the ONNX graph under onnxruntime gives logits up to" in line and "nothing was written" in line
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_a_kfold_run_exports_the_fold_asked_for(tmp_path):
    run_dir, _ = finetune(toy_config("linear", epochs=1), tmp_path / "kfold", table=toy_table(n=96, folds=3))
    exported = export_run(run_dir, "standalone", tmp_path / "fold-2", fold=2)
    assert exported.fold == "fold-2"
    x = 0.5 * torch.randn(3, 48, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = load_pretrained(exported.folder).model.eval()(x)
        assert torch.equal(ours, load_run(run_dir, 2)[0](x))
        assert not torch.equal(ours, load_run(run_dir, 1)[0](x))
    assert export_run(run_dir, "standalone", tmp_path / "first").fold == "fold-1"  # as predict takes


def test_a_multilabel_run_exports_its_task_and_thresholds(fsdd_clips, tmp_path):
    from helpers import adapter_task

    run_dir, _ = finetune(toy_config("soft", data={"task": "multilabel"}, epochs=1), tmp_path / "run",
                          table=toy_table())
    _, thresholds = adapter_task(run_dir)
    meta = json.loads((export_run(run_dir, "onnx", tmp_path / "onnx").folder / "model.json").read_text())
    assert meta["task"] == {"kind": "multilabel", "scores": "sigmoid", "thresholds": thresholds}
    standalone = predictor_for(checkpoint=str(export_run(run_dir, "standalone", tmp_path / "standalone").folder))
    from_run = predictor_for(run=run_dir)
    assert (standalone.task is MULTI) and torch.equal(standalone.thresholds, from_run.thresholds)
    for ours, theirs in zip(standalone.predict_files(fsdd_clips), from_run.predict_files(fsdd_clips)):
        assert ours.to_dict() == theirs.to_dict() and ours.positive is not None
