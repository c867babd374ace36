"""The model card of a finished run: its ``README.md``, with the YAML front matter the Hugging
Face Hub reads (library, tags, data set, base model, metrics as a model-index) over a page that
says what the run is, how well it does on its test split or folds, what it costs, the command
that trained it and how to load it.

Everything comes from the run folder (``run.json``, ``config.yaml``, ``metrics.json``, the
adapters), so a card can be written again at any time: ``softmoa push`` does, for the hub id.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..accounting import cost
from ..fsutil import atomic_write_text
from ..hub import is_hub_id
from ..embedded.record import EMBEDDED
from .public import public_info
from .files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CARD_FILE, CONFIG_FILE, LOG_FILE, METRICS_FILE, RANDOM_DIR, RUN_FILE
from .run import BACKBONE_METHODS, Run

FAMILY_TAGS = {"ast": "audio-spectrogram-transformer", "whisper": "whisper", "wav2vec2": "wav2vec2",
               "hubert": "hubert", "wavlm": "wavlm"}
FRONT_ENDS = {"fbank": "Kaldi log-mel fbank", "whisper": "Whisper's log-mel spectrogram", "waveform": "the waveform"}
METHOD_TAGS = {"linear": "linear-probe", "full": "full-fine-tuning", "adapter": "adapter", "dense": "dense-moa",
               "soft": "soft-moa", "lora": "lora"}
# metrics.json name -> (name on the card, the Hub's metric type, its averaging)
METRICS = {"accuracy": ("accuracy", "accuracy", None), "macro_f1": ("macro-F1", "f1", "macro"),
           "mAP": ("mAP", "mAP", "macro"), "micro_f1": ("micro-F1", "f1", "micro"), "d_prime": ("d′", "d_prime", None)}


def write_model_card(run_dir: str | Path) -> Path:
    """Write the card of a finished run into its folder (``README.md``, atomically)."""
    path = Path(run_dir) / CARD_FILE
    atomic_write_text(path, model_card(run_dir))
    return path


def model_card(run_dir: str | Path, repo_id: str | None = None) -> str:
    """The card of a finished run (a folder or hub id); ``repo_id``: the hub id it is pushed to,
    which its loading examples then use (else the run as given)."""
    card = _Card(run_dir, repo_id)
    return f"---\n{yaml.safe_dump(card.front_matter(), sort_keys=False, allow_unicode=True)}---\n\n{card.page()}"


class _Card:
    """What a card says, read from the run folder (a card to publish: no path of this machine)."""

    def __init__(self, run_dir: str | Path, repo_id: str | None):
        run = Run.open(run_dir)
        self.ref = repo_id or str(run_dir)
        self.name = repo_id.split("/")[-1] if repo_id else run.path.name
        self.info = public_info(run.info) if repo_id else run.info
        self.config = run.config
        self.metrics = run.metrics
        self.task = self.metrics.task
        self.adapter = run.adapter()
        self.model = run.model()
        self.dataset = Path(self.info.dataset).name
        self.tested = {key: record.result for key, record in self.metrics.folds.items() if record.result}

    # ---------------------------------------------------------------- front matter

    def front_matter(self) -> dict:
        backbone = self.info.backbone
        matter = {"library_name": "softmoa", "pipeline_tag": "audio-classification",
                  "tags": ["audio-classification", "audio", FAMILY_TAGS.get(self.model.family, self.model.family), "peft",
                           METHOD_TAGS.get(self.info.method, self.info.method), *self.task.tags],
                  "datasets": [self.dataset]}
        if is_hub_id(backbone):
            matter["base_model"] = backbone
        matter["metrics"] = sorted({METRICS[name][1] for name in self.task.summary})
        summary, folds = self.metrics.summary(), len(self.tested)
        split = "test" if folds == 1 else f"test folds ({folds}-fold cross-validation)"
        results = []
        for name in self.task.summary:
            shown, kind, average = METRICS[name]
            entry = {"type": kind, "value": round(summary[f"{name}_mean"], 4),
                     "name": f"test {shown}" + (f" (mean over {folds} folds)" if folds > 1 else "")}
            results.append(entry | ({"args": {"average": average}} if average else {}))
        matter["model-index"] = [{"name": self.name, "results": [{
            "task": {"type": "audio-classification", "name": "Audio classification"},
            "dataset": {"name": self.dataset, "type": self.dataset, "split": split},
            "metrics": results}]}]
        return matter

    # ---------------------------------------------------------------- the page

    def page(self) -> str:
        return "\n\n".join([f"# {self.name}", self._summary(), "## Results", self._results(), "## Cost",
                            self._cost(), "## Training", self._training(), "## Use", self._use(), "## Files",
                            self._files()]) + "\n"

    def _summary(self) -> str:
        method = self.config.method
        title = type(method).__doc__.strip().splitlines()[0].rstrip(".") if type(method).__doc__ else ""
        options = "; ".join(f"{key} {_option(value)}" for key, value in method.model_dump(mode="json").items()
                            if key != "name")
        labels, features = self.adapter.labels, self.adapter.features
        shown = ", ".join(labels[:12]) + (f" and {len(labels) - 12} more" if len(labels) > 12 else "")
        rows = [("data set", f"**{self.dataset}**"), ("method", f"`{method.name}`" + (f": {title}" if title else "")),
                ("options", options or "none"), ("backbone", self._backbone()),
                ("labels", f"{len(labels)} ({self.task.described}): {shown}"),
                ("input", f"{FRONT_ENDS.get(features.kind, features.kind)} of 16 kHz audio, windows of "
                          f"{features.max_length} frames of 10 ms of a clip's first {features.max_seconds:g} s; a "
                          "longer clip scores as the mean over its windows")]
        return (f"An audio classifier fine-tuned with softmoa {self.info.version} on the data set "
                f"{self.dataset} with the PETL method `{method.name}`.\n\n| | |\n|---|---|\n"
                + "\n".join(f"| {what} | {value} |" for what, value in rows))

    def _backbone(self) -> str:
        reference, c = self.info.backbone, self.model.config
        dims = f"{type(self.model).__name__}, dim {c.dim}, depth {c.depth}, heads {c.heads}"
        if self.info.backbone_local:  # a published card: the folder by its name only
            return (f"`{reference}` ({dims}), a local folder of the machine that trained it: whoever loads this run "
                    f"needs a copy of it named `{reference}` beside `{ADAPTER_CONFIG}`")
        if reference == RANDOM_DIR:
            return f"a randomly initialised {dims}, saved in `{RANDOM_DIR}/` beside the adapter (it travels with it)"
        if is_hub_id(reference):
            return f"[{reference}](https://huggingface.co/{reference}) ({dims}; loaded through the Hugging Face cache)"
        if reference == EMBEDDED:
            return f"softmoa's embedded backbone ({dims}), shipped in the package: it loads on any installation"
        return (f"`{reference}` ({dims}), a local folder of the machine that trained it: whoever loads this run "
                "needs that backbone at the same path")

    def _results(self) -> str:
        names = self.task.summary
        header = "| split | " + " | ".join(METRICS[name][0] for name in names) + " | clips | best epoch |"
        rows = [header, "|" + "---|" * (len(names) + 3)]
        for key, result in self.tested.items():
            split = "test" if key == "all" else f"fold {key} (test)"
            rows.append(f"| {split} | " + " | ".join(_figure(result.scores[name], name) for name in names)
                        + f" | {result.scores['clips']} | {result.best_epoch} |")
        summary, folds = self.metrics.summary(), len(self.tested)
        if folds > 1:
            rows.append(f"| **mean ± std over {folds} folds** | " + " | ".join(
                f"{_figure(summary[name + '_mean'], name)} ± {_figure(summary[name + '_std'], name)}"
                for name in names) + " | | |")
        epochs = _plural(self.config.training.epochs, "epoch")
        plan = ("its test split" if folds == 1 else
                f"{folds}-fold cross-validation: each fold's model is tested on the fold it did not train on")
        return (f"Scored on {plan}. Each model is the epoch of best validation {self.task.metric} (of {epochs}), "
                "tested once.\n\n" + "\n".join(rows))

    def _cost(self) -> str:
        spent = cost(self.model)
        share = 100 * spent.trainable_params / spent.total_params
        frames = self.adapter.features.max_length
        size = next(iter(self.tested.values())).adapter_bytes
        flops = f"{_si(spent.flops)} (backbone {_si(spent.backbone_flops)}, PETL modules {_si(spent.petl_flops)})"
        rows = ["| | |", "|---|---|",
                f"| trainable parameters | {spent.trainable_params:,} of {spent.total_params:,} ({share:.2f}%) |",
                f"| forward FLOPs per window of {frames} frames | {flops} |"]
        if size:
            each = " (each fold)" if len(self.tested) > 1 else ""
            rows.append(f"| `{ADAPTER_WEIGHTS}`{each} | {size:,} bytes |")
        return "FLOPs count 2 per multiply-add of the matmuls and convolutions.\n\n" + "\n".join(rows)

    def _training(self) -> str:
        t = self.config.training
        command = self.info.command
        how = (f"Trained by this command:\n\n```bash\n{command}\n```" if command else
               "The command that trained it was not recorded: it was trained from Python "
               "(`softmoa_cli.engine.train.finetune`) or by `softmoa ablate`.")
        return (f"{how}\n\n{self._schedule()} Peak learning rate {t.learning_rate(self.info.method):g}, "
                f"seed {t.seed}. `{CONFIG_FILE}` holds the whole effective config: `softmoa finetune --preset "
                f"{CONFIG_FILE}` trains the same run again (with the data set where it names it).")

    def _schedule(self) -> str:
        """What training did, from the fold results: epochs trained of those planned (and why it
        stopped sooner), optimiser steps, the effective batch."""
        t, results = self.config.training, list(self.tested.values())
        trained = [r.epochs_trained or t.epochs for r in results]
        steps = [r.optimizer_steps for r in results]
        planned = (f"max_steps {t.max_steps}" if t.max_steps else _plural(t.epochs, "epoch") + " planned")
        epochs = f"{_plural(trained[0], 'epoch')}" if len(set(trained)) == 1 else (
            "epochs per fold: " + ", ".join(map(str, trained)))
        stops = sum(r.stopped_early for r in results)
        early = "" if not stops else (
            f"; early stopping (patience {t.patience}) ended " + ("it" if len(results) == 1 else
                                                                 f"{stops} of {len(results)} folds") + " sooner")
        counted = "" if None in steps else (
            f", {steps[0]:,} optimiser steps" if len(set(steps)) == 1 else
            ", optimiser steps per fold: " + ", ".join(f"{s:,}" for s in steps))
        batch = (f"an effective batch of {t.batch_size * t.accumulate} clips ({t.accumulate} accumulated "
                 f"micro-batches of {t.batch_size})" if t.accumulate > 1 else f"batch {t.batch_size}")
        return f"Trained {epochs} ({planned}{early}){counted} at {batch}."

    def _use(self) -> str:
        ref = self.ref
        lines = ["# the top labels of audio files", f"softmoa predict clip.wav --run {ref}",
                 "# one embedding per file", f"softmoa embed clips/ --run {ref} --out clips.npz",
                 f"# the test metrics again (needs the data set {self.dataset})",
                 f"softmoa evaluate {ref}" + (f" --dataset PATH/TO/{self.dataset}" if self.info.dataset_local else "")]
        if self.info.method in ("soft", "dense"):
            lines += ["# what each expert contributes", f"softmoa analyze {ref}"]
        if self.info.method in BACKBONE_METHODS:
            lines += ["# as the backbone of another run", f"softmoa finetune --dataset DATA --checkpoint {ref}"]
        where = ("A hub id loads through the Hugging Face cache: downloaded once, then offline too "
                 "(`HF_HUB_OFFLINE=1`).\n\n" if is_hub_id(ref) and not Path(ref).exists() else "")
        return (f"{where}With softmoa installed:\n\n```bash\n" + "\n".join(lines) + "\n```\n\nFrom Python:\n\n"
                f"```python\nfrom softmoa_cli.engine.predict import Predictor\nfrom softmoa_cli.engine.runs.run "
                f"import Run\n\nrun = Run.open(\"{ref}\")\npredictor = Predictor(run.classifier())  # its model, labels, "
                f"task and features\nprint(predictor.predict(\"clip.wav\", top_k=3).predictions)  # [(label, score), "
                f"...]\nmodel = run.model()  # the torch model (eval mode)\n```")

    def _files(self) -> str:
        folds = self.info.folds
        where = "in each `fold-K/` folder" if folds else "here"
        files = [f"- `{ADAPTER_WEIGHTS}` and `{ADAPTER_CONFIG}` {where}: the trained tensors "
                 + ("(the whole model: a full fine-tune)" if self.info.method == "full" else "only")
                 + " and how to rebuild the model around them (backbone, method, labels, features)",
                 f"- `{CONFIG_FILE}`: the effective config; `{RUN_FILE}`: the run's description",
                 f"- `{METRICS_FILE}` and `{LOG_FILE}`: every epoch's training and validation figures, each "
                 "test result"]
        if self.info.backbone == RANDOM_DIR and not self.info.backbone_local:
            files.append(f"- `{RANDOM_DIR}/`: the randomly initialised backbone")
        return "\n".join(files)


def _option(value) -> str:
    """A method option as a card shows it: 128 (not 128.0), false, q, v."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _figure(value: float | None, name: str) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if name == "d_prime" else f"{value:.4f}"


def _si(count: int) -> str:
    """A count with a metric prefix: 12.3 G, 4.56 M, 789 k."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g} {prefix}"
    return str(count)
