"""Model cards: every finished run writes README.md with the Hub's front matter, the test
metrics its metrics.json has, its cost, the command that trained it and how to load it."""

from __future__ import annotations

import json

import yaml
from helpers import run, toy_config, toy_table, write_wav

from softmoa_cli.engine.train import finetune


def card_parts(run_dir):
    """(front matter as a dict, the page below it) of a run's README.md."""
    text = (run_dir / "README.md").read_text()
    assert text.startswith("---\n")
    matter, page = text[4:].split("\n---\n", 1)
    return yaml.safe_load(matter), page


def card_metrics(matter) -> dict:
    """The model-index metrics of a card by name: {name on the card: value}."""
    [entry] = matter["model-index"]
    [result] = entry["results"]
    return {metric["name"]: metric["value"] for metric in result["metrics"]}


def test_a_finished_run_has_a_card_with_front_matter_and_its_metrics(tmp_path):
    command = "softmoa finetune --dataset toy --method soft --experts 3"
    folder, metrics = finetune(toy_config("soft"), tmp_path / "toy-soft", table=toy_table(), command=command)
    matter, page = card_parts(folder)
    assert matter["library_name"] == "softmoa" and matter["pipeline_tag"] == "audio-classification"
    assert {"audio-classification", "peft", "soft-moa"} <= set(matter["tags"]) and matter["datasets"] == ["toy"]
    assert "base_model" not in matter  # a random backbone is no hub model
    summary = metrics.to_dict()["summary"]
    found = card_metrics(matter)
    assert abs(found["test accuracy"] - summary["accuracy_mean"]) < 1e-4
    assert abs(found["test macro-F1"] - summary["macro_f1_mean"]) < 1e-4
    test = metrics.to_dict()["folds"]["all"]["test"]
    assert f"| test | {test['accuracy']:.4f} | {test['macro_f1']:.4f} | {test['clips']} |" in page
    assert f"trainable parameters | {test['trainable_params']:,} of" in page and "forward FLOPs per window" in page
    assert f"```bash\n{command}\n```" in page
    assert f"softmoa predict clip.wav --run {folder}" in page and f'Run.open("{folder}")' in page
    assert "experts 3" in page and "`backbone/`" in page and "softmoa analyze" in page


def test_a_k_fold_card_shows_every_fold_and_the_mean(tmp_path):
    folder, metrics = finetune(toy_config("adapter", epochs=1), tmp_path / "toy-adapter", table=toy_table(folds=3))
    matter, page = card_parts(folder)
    summary = metrics.to_dict()["summary"]
    assert abs(card_metrics(matter)["test accuracy (mean over 3 folds)"] - summary["accuracy_mean"]) < 1e-4
    assert "3-fold cross-validation" in matter["model-index"][0]["results"][0]["dataset"]["split"]
    for fold in (1, 2, 3):
        accuracy = metrics.to_dict()["folds"][str(fold)]["test"]["accuracy"]
        assert f"| fold {fold} (test) | {accuracy:.4f} |" in page
    assert f"| **mean ± std over 3 folds** | {summary['accuracy_mean']:.4f} ± {summary['accuracy_std']:.4f} |" in page
    assert "not recorded" in page and "softmoa analyze" not in page  # made from Python; no experts to analyze


def test_a_multi_label_card_shows_map_and_f1(tmp_path):
    folder, metrics = finetune(toy_config("soft", data={"task": "multilabel"}, epochs=1), tmp_path / "multi",
                               table=toy_table())
    matter, page = card_parts(folder)
    found, summary = card_metrics(matter), metrics.to_dict()["summary"]
    assert abs(found["test mAP"] - summary["mAP_mean"]) < 1e-4
    assert abs(found["test micro-F1"] - summary["micro_f1_mean"]) < 1e-4 and "test accuracy" not in found
    assert "multi-label" in matter["tags"] and "| split | mAP | micro-F1 | macro-F1 | d′ |" in page
    assert "its own threshold" in page


def test_a_run_from_the_command_line_records_that_command(tmp_path, monkeypatch):
    for c, name in enumerate(("low", "high")):
        for k in range(5):
            write_wav(tmp_path / "mine" / name / f"{k}.wav", seconds=0.2, seed=10 * c + k)
    monkeypatch.setenv("SOFTMOA_HOME", str(tmp_path / "home"))
    preset = tmp_path / "tiny.yaml"
    preset.write_text("model:\n  checkpoint: random\n  random: {dim: 32, depth: 1, heads: 2, mlp_dim: 64}\n")
    args = ["finetune", "--dataset", tmp_path / "mine", "--preset", preset, "-m", "linear", "--epochs", "1",
            "--batch-size", "4", "--max-length", "20", "--out", tmp_path / "run"]
    trained = run(*args)
    assert trained.exit_code == 0, trained.output
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["command"]
    assert recorded == (f"softmoa finetune --dataset {tmp_path / 'mine'} --preset {preset} --method linear "
                        f"--max-length 20 --epochs 1 --batch-size 4 --out {tmp_path / 'run'}")
    assert f"```bash\n{recorded}\n```" in card_parts(tmp_path / "run")[1]


def test_the_card_says_what_training_did_not_what_was_planned(tmp_path):
    # --max-steps 5 of --epochs 10: 1 epoch (partial), 5 steps; not "10 epochs".
    folder, _ = finetune(toy_config("adapter", epochs=10, max_steps=5), tmp_path / "steps", table=toy_table())
    assert "Trained 1 epoch (max_steps 5), 5 optimiser steps at batch 16." in card_parts(folder)[1]
    # A patience stop after 3 of 6 epochs (7 steps each): says so.
    folder, metrics = finetune(toy_config("adapter", epochs=6, patience=2, lr=1e-12), tmp_path / "early",
                               table=toy_table())
    assert metrics.to_dict()["folds"]["all"]["test"]["stopped_early"]
    assert ("Trained 3 epochs (6 epochs planned; early stopping (patience 2) ended it sooner), 21 optimiser steps "
            "at batch 16.") in card_parts(folder)[1]
    # --batch-size 4 --accumulate 4: the effective batch is 16.
    folder, _ = finetune(toy_config("adapter", epochs=1, batch_size=4, accumulate=4), tmp_path / "accumulate",
                         table=toy_table())
    assert ("Trained 1 epoch (1 epoch planned), 7 optimiser steps at an effective batch of 16 clips (4 accumulated "
            "micro-batches of 4).") in card_parts(folder)[1]
